"""Parsing a feed in a child process, under a deadline that really stops it and a memory cap.

Whatever bytes a feed sends are parsed by code we do not control all of (feedparser, the
XML parsers beneath it): an RSS file of 1 MB with 100,000 attributes on one element took
105 s there, and such a path can hide anywhere. In a child process, the parse can be ended
at the fetch's deadline (the child is killed) and held to a memory cap (its address space
is limited), and the run that waits for it loses only this feed. Children are forked from
a small server process (multiprocessing's "forkserver", started on first use with the
parser already imported): about 20 ms a feed, and safe in a process with threads. What the
parse logs in the child is logged again here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from ..errors import FeedError
from ..models import Paper
from ._parse import parse

log = logging.getLogger(__name__)

# Address space a parse may add to what its process starts with. Feeds of a few MB take a
# few tens of MB; 25 MB of RSS (http.max_bytes) about 150 MB.
PARSE_MEMORY = 512 * 1024 * 1024

_lock = threading.Lock()
_context: Any = None


class ParseCrash(Exception):
    """The parser failed with something other than a FeedError: a bug, with the child's
    traceback."""

    def __init__(self, what: str, trace: str) -> None:
        super().__init__(what)
        self.trace = trace


def _ctx() -> Any:
    global _context
    with _lock:
        if _context is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(["digest.sources._isolate"])
            _context = ctx
        return _context


def parse_within(
    data: bytes,
    source: str,
    *,
    base_url: str,
    skip_replacements: bool,
    seconds: float,
    memory: int = PARSE_MEMORY,
) -> list[Paper]:
    """``parse`` in a child process that is killed after ``seconds``: a FeedError then, or
    when it needs more than ``memory`` bytes or dies; ``ParseCrash`` for any other error."""
    ctx = _ctx()
    receive, send = ctx.Pipe(duplex=False)
    level = logging.getLogger("digest").getEffectiveLevel()
    child = ctx.Process(
        target=_child,
        args=(send, data, source, base_url, skip_replacements, memory, level),
        name=f"digest-parse-{source}"[:60],
        daemon=True,
    )
    try:
        child.start()
        send.close()
        if not receive.poll(max(seconds, 0.0)):
            raise FeedError(
                f"feed {source!r}: reading the feed took longer than the fetch's {seconds:.3g} s "
                "left (http.connect_timeout + http.read_timeout); the feed may be hostile, "
                "or raise http.read_timeout for a very large one"
            )
        try:
            kind, value, trace, records = receive.recv()
        except (EOFError, OSError) as exc:
            child.join(5)
            raise FeedError(
                f"feed {source!r}: the process reading the feed died "
                f"({_how(child.exitcode)}); the feed may be hostile"
            ) from exc
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    for name, levelno, message in records:
        logging.getLogger(name).log(levelno, "%s", message)
    if kind == "ok":
        papers: list[Paper] = value
        return papers
    if kind == "feed":
        raise FeedError(value)
    if kind == "memory":
        raise FeedError(
            f"feed {source!r}: reading the feed needed more than {memory // 2**20} MB; "
            "the feed may be hostile"
        )
    raise ParseCrash(value, trace)


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {-code}"
    return f"exit code {code}"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:
            self.records.append((record.name, record.levelno, record.getMessage()))


def _child(
    send: Connection,
    data: bytes,
    source: str,
    base_url: str,
    skip_replacements: bool,
    memory: int,
    level: int,
) -> None:
    handler = _Records()
    root = logging.getLogger("digest")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if memory:
        with open("/proc/self/statm", "rb") as fh:  # what the process holds to start with
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + memory, size + memory))
    result: tuple[str, Any, str]
    try:
        result = (
            "ok",
            parse(data, source, base_url=base_url, skip_replacements=skip_replacements),
            "",
        )
    except FeedError as exc:
        result = ("feed", str(exc), "")
    except MemoryError:
        result = ("memory", "", "")
    except BaseException as exc:
        result = ("crash", f"{type(exc).__name__}: {exc}"[:500], traceback.format_exc()[-5000:])
    del data
    try:
        send.send((*result, handler.records))
    except MemoryError:
        send.send(("memory", "", "", handler.records))
    send.close()
