"""What every command shares: --config, -v and -q, logging, one-line errors, exit codes."""

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


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("digest").setLevel(level)
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "apscheduler", "premailer", "mail.log"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def common(fn: F) -> F:
    """--config and -v on every command; our errors become one line and an exit code."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Configuration file.",
    )
    @click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
    @functools.wraps(fn)
    def wrapper(config_path: Path, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        setup_logging(-1 if quiet else verbose)
        try:
            cfg = load(config_path)
            return fn(cfg, **kwargs)
        except DigestError as exc:
            click.echo(f"digest: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def parse_edition(_ctx: Any, _param: Any, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from exc
