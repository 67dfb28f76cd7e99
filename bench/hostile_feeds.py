"""What hostile feeds cost a real `digest run`: time, peak memory, and whether the run
still sends.

A local HTTP server (threads, raw sockets where a framework would not misbehave enough)
serves one hostile payload per case; each case is a fresh project whose config lists the
hostile feed first and a good feed (30 real Hugging Face papers) after it, with one
subscriber, delivering to the outbox. `python -m digest run` runs as a child process; its
wall time, its peak RSS, the peak PSS of its whole process tree (the run and any process
it starts, such as the parser's; sampled from /proc every 20 ms) and its exit code are
measured, with the exact high-water mark of its RSS (and of any process it waited for)
from ``wait4``; what it printed says how many feeds failed and how many digests went out.
The `all` case puts every hostile feed (and a subscriber with a 2.5 MB interests text) into
one run.

Cases (the issue's numbers in brackets are what was seen before the fix):
  gzip-bomb       Content-Encoding: gzip, gzip: ~2 KB on the wire, 1 GiB inside   [2.17 GB]
  big-abstract    a Hugging Face paper with a 10.6 MB abstract                   [3.78 GB, 15 s]
  many-attrs      1 MB of RSS, 100,000 attributes on <channel>                   [105 s]
  slow-headers    headers at a byte every 3 s, against a 15 s deadline          [61 s of 15 s]
  big-interests   a subscriber file with 2.5 MB of interests                     [1.0 GB]
  wrong-types     "authors": 5, "ai_keywords": 7 (Hugging Face JSON)             [run dies]
  deep-json       JSON nested 1,100 deep                                         [run dies]
  big-int         a 5,000-digit integer                                          [run dies]
  huge-upvotes    "upvotes": 10**30                                              [run dies]
  far-date        "publishedAt": "9999-12-31T23:59:59-23:59"                     [run dies]
  etag            a non-ASCII ETag: the second run                               [2nd run dies]
  third-party     a JSON Feed reusing an arXiv id (abstract, 987654 upvotes, code link)
  bad-morning     feeds down at 07:00, back at 09:00: what the 09:00 run sends   [0 sent]

Every project has the issue's [http] settings: connect_timeout 5 and read_timeout 10 (a
15 s deadline per fetch), no retries. ``--baseline REV`` runs every case on the committed
tree REV too (``git archive``, same virtualenv), or on a folder holding a checkout (a
scratch worktree), and prints both. ``--limit-as BYTES`` caps each run's address space
(``RLIMIT_AS``, inherited by what it starts): code without a ceiling is then stopped there
instead of taking the machine's memory. Timings on a shared machine are noisy: pin with
taskset.

Run: .venv/bin/python bench/hostile_feeds.py [--cases a,b] [--baseline REV|DIR]
     [--limit-as 3000000000] [--timeout 240]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.server
import json
import os
import random
import re
import resource
import secrets
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
GOOD = (ROOT / "tests" / "data" / "feeds" / "hf-daily-papers-2026-06-12.json").read_bytes()
TRUSTED_ID = json.loads(GOOD)[1]["paper"]["id"]  # it has a code link on Hugging Face
BROAD = "language models, reasoning, agents, vision, robotics, speech, data, training"
CACHE = Path(tempfile.gettempdir()) / "digest-bench-hostile"


# ------------------------------------------------------------------ payloads


def gzip_bomb() -> bytes:
    """gzip(gzip(1 GiB of zeros)): about 2 KB, made once and kept in the temp folder."""
    path = CACHE / "gzip-gzip-1GiB.bin"
    if path.exists():
        return path.read_bytes()
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [inner.compress(block) for _ in range(1024)]
    parts.append(inner.flush())
    data = gzip.compress(b"".join(parts), 9)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def words(n_bytes: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10)))
        for _ in range(5000)
    ]
    out: list[str] = []
    size = 0
    while size < n_bytes:
        w = rng.choice(vocab)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def hf(**paper: Any) -> bytes:
    inner = {"id": "2406.99999", "title": "A hostile paper", "summary": "An abstract.", **paper}
    return json.dumps([{"paper": inner, "title": inner["title"]}]).encode()


def many_attrs() -> bytes:
    attrs = " ".join(f'a{i}="v"' for i in range(100_000))
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel {attrs}><title>t</title>'
        "<item><title>A paper</title><link>https://arxiv.org/abs/2406.99997</link>"
        "<description>An abstract.</description></item></channel></rss>"
    ).encode()


def third_party() -> bytes:
    return json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "papers, improved",
            "items": [
                {
                    "id": f"https://arxiv.org/abs/{TRUSTED_ID}",
                    "url": f"https://arxiv.org/abs/{TRUSTED_ID}",
                    "title": "A better title, says a stranger",
                    "content_text": "Authors: A. Stranger Upvotes: 987654 Summary: "
                    + "A replacement abstract, longer than the real one. " * 40
                    + "Code: https://github.com/stranger/not-the-code",
                }
            ],
        }
    ).encode()


@dataclass
class Route:
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    slow: float = 0.0  # seconds between header bytes


class Site:
    """The payloads on a local HTTP server, one path each."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {
            "/good": Route(GOOD, (("Content-Type", "application/json"),))
        }
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                # a proxied request names the whole url: http://huggingface.co/api/...
                route = site.routes.get(urlsplit(self.path).path)
                if route is None:
                    self.send_error(404)
                    return
                if route.slow:
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
                    try:
                        for i in range(len(head)):
                            self.wfile.write(head[i : i + 1])
                            self.wfile.flush()
                            time.sleep(route.slow)
                        self.wfile.write(
                            b"\r\nContent-Length: %d\r\n\r\n" % len(route.body) + route.body
                        )
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.send_response(route.status)
                for k, v in route.headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        if "://" in path:  # served here through the proxy (HTTP_PROXY points here)
            return path
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


JSON = (("Content-Type", "application/json"),)


def routes() -> dict[str, Route]:
    return {
        "/gzip-bomb": Route(
            gzip_bomb(), (("Content-Type", "application/json"), ("Content-Encoding", "gzip, gzip"))
        ),
        "/big-abstract": Route(hf(summary=words(10_600_000)), JSON),
        "/many-attrs": Route(many_attrs(), (("Content-Type", "application/rss+xml"),)),
        "/slow-headers": Route(GOOD, slow=3.0),
        "/wrong-types": Route(hf(authors=5, ai_keywords=7), JSON),
        "/deep-json": Route(b"[" * 1100 + b"]" * 1100, JSON),
        "/big-int": Route(
            hf(upvotes=1).replace(b'"upvotes": 1', b'"upvotes": ' + b"9" * 5000), JSON
        ),
        "/huge-upvotes": Route(hf(upvotes=10**30), JSON),
        "/far-date": Route(hf(publishedAt="9999-12-31T23:59:59-23:59"), JSON),
        "/etag": Route(GOOD, (("Content-Type", "application/json"), ("ETag", '"caf\u00e9"'))),
        "/third-party": Route(third_party(), JSON),
        "/api/daily_papers": Route(GOOD, JSON),  # as http://huggingface.co/api/daily_papers
        "/down": Route(b"down", status=500),
    }


# ------------------------------------------------------------------ projects and runs


def project(base: Path, site: Site, feeds: list[str], interests: str = BROAD) -> Path:
    base.mkdir(parents=True)
    (base / "subscribers").mkdir()
    lines = [
        'database = "sqlite:///digest.db"',
        "[sender]",
        'address = "digest@example.org"',
        "[http]",  # the issue's: a 15 s deadline per fetch
        "connect_timeout = 5",
        "read_timeout = 10",
        "retries = 0",
    ]
    for path in feeds:
        name = urlsplit(path).hostname or path.strip("/")
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{site.url(path)}"']
    (base / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (base / "subscribers" / "ada.toml").write_text(
        f'email = "ada@example.org"\ninterests = """{interests}"""\n', encoding="utf-8"
    )
    return base / "config.toml"


def memory(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, PSS of ``pid`` and every process descended from it), in bytes.
    PSS shares each page among the processes that map it, so pages a forked child shares
    with its parent are counted once."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, ()))
        try:
            with open(f"/proc/{p}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        pss += int(line.split()[1]) * 1024
                    elif line.startswith(b"Rss:") and p == pid:
                        rss = int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


@dataclass
class Outcome:
    code: int | str
    seconds: float
    rss_mb: float
    pss_mb: float
    sent: int | None
    failed_feeds: int | None
    note: str = ""
    maxrss_mb: float = 0.0  # wait4's high-water mark: the run, or a process it waited for


LIMIT_AS = 0  # bytes of address space each run may map (0: no limit); set by --limit-as


def _limit() -> None:
    if LIMIT_AS:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def run(tree: Path, config: Path, timeout: float, *args: str) -> tuple[Outcome, str]:
    port = re.search(r"http://127\.0\.0\.1:(\d+)/", config.read_text(encoding="utf-8"))
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DIGEST_UNSUBSCRIBE_SECRET": secrets.token_urlsafe(32),
        # feeds named by their real host (huggingface.co) are served by the local site
        "HTTP_PROXY": f"http://127.0.0.1:{port.group(1) if port else 9}",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "run", "--config", str(config), *args],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_limit,
    )
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    rss = pss = 0
    code: int | str
    while True:
        now_rss, now_pss = memory(proc.pid)
        rss, pss = max(rss, now_rss), max(pss, now_pss)
        # reaped here (not by Popen) so that its rusage, the exact peak RSS, is ours
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            break
        if time.monotonic() - start > timeout:
            for child in _descendants(proc.pid):
                _kill(child)
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            code = f"killed at {timeout:g} s"
            break
        time.sleep(0.02)
    seconds = time.monotonic() - start
    reader.join(5)
    text = b"".join(out).decode("utf-8", "replace")
    sent = re.search(r"(\d+) sent", text)
    failed = re.search(r"(\d+) failed; ", text)
    note = "Traceback: " + text.strip().splitlines()[-1][:90] if "Traceback" in text else ""
    return (
        Outcome(
            code,
            seconds,
            rss / 1e6,
            pss / 1e6,
            int(sent.group(1)) if sent else None,
            int(failed.group(1)) if failed else None,
            note,
            usage.ru_maxrss * 1024 / 1e6,  # KiB on Linux
        ),
        text,
    )


def _descendants(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
                out.extend(_descendants(int(entry)))
    return out


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, 9)


def stored(config: Path, pid: str) -> str:
    """What the database holds for the third-party case's paper."""
    import sqlite3

    with sqlite3.connect(config.parent / "digest.db") as conn:
        row = conn.execute(
            "SELECT substr(abstract, 1, 30), upvotes, code_url FROM paper WHERE id = ?", (pid,)
        ).fetchone()
    return f"abstract {row[0]!r}, upvotes {row[1]}, code {row[2]}" if row else "no paper"


CASES = (
    "gzip-bomb",
    "big-abstract",
    "many-attrs",
    "slow-headers",
    "big-interests",
    "wrong-types",
    "deep-json",
    "big-int",
    "huge-upvotes",
    "far-date",
    "etag",
    "third-party",
    "bad-morning",
    "all",
)


def case(name: str, tree: Path, site: Site, base: Path, timeout: float) -> Outcome:
    if name == "big-interests":
        config = project(base, site, ["/good"], interests=words(2_500_000, seed=2))
        return run(tree, config, timeout)[0]
    if name == "etag":
        config = project(base, site, ["/etag", "/good"])
        run(tree, config, timeout)
        outcome = run(tree, config, timeout, "--edition", "2030-01-01")[0]
        outcome.note = ("2nd run: " + outcome.note) if outcome.note else "2nd run ok"
        return outcome
    if name == "third-party":
        # the stranger first, then the Hugging Face API (its official source by its url)
        config = project(base, site, ["/third-party", "http://huggingface.co/api/daily_papers"])
        outcome = run(tree, config, timeout)[0]
        outcome.note = stored(config, TRUSTED_ID)
        return outcome
    if name == "bad-morning":
        config = project(base, site, ["/down"])
        run(tree, config, timeout)
        text = config.read_text(encoding="utf-8").replace(site.url("/down"), site.url("/good"))
        config.write_text(text, encoding="utf-8")
        outcome = run(tree, config, timeout)[0]
        outcome.note = "the second run, feeds back"
        return outcome
    if name == "all":
        hostile = [f"/{c}" for c in CASES if f"/{c}" in site.routes and c != "etag"]
        config = project(base, site, [*hostile, "/good"], interests=words(2_500_000, seed=2))
        return run(tree, config, timeout)[0]
    config = project(base, site, [f"/{name}", "/good"])
    return run(tree, config, timeout)[0]


def checkout(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument(
        "--baseline", help="a git revision to measure too (e.g. main~3), or a checkout's folder"
    )
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    ap.add_argument(
        "--limit-as", type=int, default=0, help="bytes of address space per run (RLIMIT_AS)"
    )
    args = ap.parse_args()
    global LIMIT_AS
    LIMIT_AS = args.limit_as
    names = [c for c in args.cases.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="digest-hostile-"))
    trees = [("this checkout", ROOT)]
    if args.baseline and Path(args.baseline).is_dir():
        trees.insert(0, (f"baseline {args.baseline}", Path(args.baseline).resolve()))
    elif args.baseline:
        trees.insert(0, (f"baseline {args.baseline}", checkout(args.baseline, work / "baseline")))
    site = Site()
    site.routes.update(routes())
    limit = f", address space at most {LIMIT_AS / 1e9:g} GB a run" if LIMIT_AS else ""
    print(f"peak RSS: wait4's high-water mark (RSS of a sample every 20 ms){limit}")
    print(
        f"{'case':<14} {'tree':<20} {'exit':>6} {'time':>8} {'peak RSS':>17} {'tree PSS':>9} "
        f"{'sent':>5} {'feeds failed':>13}  note"
    )
    try:
        for name in names:
            for label, tree in trees:
                base = work / label.replace(" ", "-") / name
                o = case(name, tree, site, base, args.timeout)
                print(
                    f"{name:<14} {label[:20]:<20} {o.code!s:>6} {o.seconds:>7.1f}s "
                    f"{o.maxrss_mb:>5.0f} MB ({o.rss_mb:>5.0f} MB) {o.pss_mb:>6.0f} MB "
                    f"{o.sent if o.sent is not None else '-':>5} "
                    f"{o.failed_feeds if o.failed_feeds is not None else '-':>13}  {o.note}",
                    flush=True,
                )
    finally:
        site.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
