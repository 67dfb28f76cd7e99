"""The ``digest`` command line: one group, the commands of an edition (``_commands``: run,
fetch, rank, preview, check, feeds), of operations (``_admin``: schedule, subscribe,
unsubscribe, subscribers, vote, status) and of the database's schema (``_db``: db status, db
upgrade, db revision); ``_workers`` runs ``digest run --workers N``; what they share is
in ``_common`` (options, logging, one-line errors, exit codes: 0 all good, 1 something
failed, 2 bad config or usage)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from . import _admin, _commands, _db, _init
from ._common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, global_options

__all__ = ["EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@global_options
def main(config_path: Path | None, verbose: int, quiet: bool) -> None:
    """Personalized daily digests of trending research papers, by email.

    --config, -v and -q go before or after the command's name."""


for _command in (
    _init.init,
    _commands.run,
    _commands.fetch,
    _commands.rank,
    _commands.preview,
    _commands.check,
    _commands.feeds,
    _admin.schedule,
    _admin.serve,
    _admin.subscribe,
    _admin.unsubscribe,
    _admin.subscribers,
    _admin.vote,
    _admin.status,
    _db.db,
):
    main.add_command(_command)
