"""What every command shares: --config, -v and -q (before or after the command's name),
logging, one-line errors, exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import DEFAULT_CONFIG, load
from ..errors import DigestError

log = logging.getLogger("digest")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class Output:
    """How much a command says: its report on stdout (left out with ``quiet``, -q, when all
    went well), its problems on stderr (always); ``verbose`` counts -v."""

    def __init__(self, quiet: bool = False, verbose: int = 0) -> None:
        self.quiet = quiet
        self.verbose = verbose

    def say(self, line: str) -> None:
        """A line of the command's report (left out with -q)."""
        if not self.quiet:
            click.echo(line)

    def problem(self, line: str) -> None:
        """A line about something that went wrong: always shown, on stderr."""
        click.echo(line, err=True)


class _Console(logging.StreamHandler):
    """The CLI's log handler on stderr. With ``reported`` set (a command that prints a
    report of its failures), records a report repeats (``extra=IN_SUMMARY``) are left out."""

    reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.reported and getattr(record, "in_summary", False):
            return False
        return super().filter(record)


def setup_logging(verbose: int, *, quiet: bool = False, chatty: bool = False) -> None:
    """Log to stderr: warnings and errors (with ``chatty``, a long-running command, also
    what it does: INFO); -v adds INFO, -vv DEBUG; -q only warnings and errors."""
    level = (
        logging.DEBUG if verbose >= 2 else logging.INFO if verbose or chatty else logging.WARNING
    )
    if quiet:
        level = logging.WARNING
    root = logging.getLogger()
    console = next((h for h in root.handlers if isinstance(h, _Console)), None)
    if console is None and not root.handlers:  # a test's capture handler, if any, stays alone
        console = _Console(sys.stderr)
        console.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
        root.addHandler(console)
        root.setLevel(logging.WARNING)
    if console is not None:
        console.setLevel(level)
        console.reported = False
    logging.getLogger("digest").setLevel(min(level, logging.INFO))
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "apscheduler", "premailer", "mail.log"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def reported_failures() -> None:
    """This command prints its failures in its report: do not log them twice."""
    for h in logging.getLogger().handlers:
        if isinstance(h, _Console):
            h.reported = True


def global_options(fn: F) -> F:
    """--config, -v and -q on the group (``digest --config x status``); the command's own
    take precedence."""
    fn = click.option(
        "-q", "--quiet", is_flag=True, help="Print nothing when all went well (for cron)."
    )(fn)
    fn = click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")(fn)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Configuration file [default: {DEFAULT_CONFIG}].",
    )(fn)


def common(fn: F | None = None, *, chatty: bool = False) -> Any:
    """--config, -v and -q on every command (also accepted before the command's name); the
    command gets the loaded config and an ``Output``; our errors become one line and an
    exit code. ``chatty``: logs what it does by default (a long-running command)."""

    def decorate(fn: F) -> F:
        @global_options
        @functools.wraps(fn)
        def wrapper(config_path: Path | None, verbose: int, quiet: bool, **kwargs: Any) -> Any:
            outer = click.get_current_context().find_root().params
            config_path = config_path or outer.get("config_path") or DEFAULT_CONFIG
            verbose += outer.get("verbose") or 0
            quiet = quiet or bool(outer.get("quiet"))
            setup_logging(verbose, quiet=quiet, chatty=chatty)
            out = Output(quiet, verbose)
            try:
                cfg = load(config_path)
                if "out" in fn.__annotations__:
                    kwargs["out"] = out
                return fn(cfg, **kwargs)
            except DigestError as exc:
                click.echo(f"digest: error: {exc}", err=True)
                sys.exit(exc.exit_code)

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def parse_edition(_ctx: Any, _param: Any, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from exc
