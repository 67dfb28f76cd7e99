"""The database commands: ``digest db status``, ``digest db upgrade`` and, for developers,
``digest db revision`` (a new schema revision from the models)."""

from __future__ import annotations

import sys

import click

from ..config import Config
from ..errors import DigestError
from ._common import EXIT_OK, EXIT_PARTIAL, common, setup_logging


@click.group()
def db() -> None:
    """The database's schema: its state, and bringing it up to date."""


@db.command()
@common
def status(cfg: Config) -> None:
    """Say where the schema stands; exit 1 when it needs `digest db upgrade`."""
    from ..store import schema_status

    st = schema_status(cfg.database_url)
    click.echo(f"{_shown(cfg.database_url)}: {st.describe()}")
    if not st.up_to_date and not st.new:
        click.echo("run `digest db upgrade` (back the database up first)")
    sys.exit(EXIT_OK if st.up_to_date or st.new else EXIT_PARTIAL)


@db.command()
@common
def upgrade(cfg: Config) -> None:
    """Bring the schema up to date (safe to run any time; one process at a time).

    A SQLite database is copied next to itself first (<file>.before-<revision>).
    """
    from ..store import upgrade_schema

    done = upgrade_schema(cfg.database_url)
    where = _shown(cfg.database_url)
    if done.before.up_to_date:
        click.echo(f"{where}: already up to date ({done.after.head})")
        return
    if done.backup is not None:
        click.echo(f"copied the database to {done.backup} first")
    click.echo(f"{where}: was {done.before.describe()}; now {done.after.describe()}")


@db.command()
@click.option("-m", "--message", required=True, help="What the revision changes.")
def revision(message: str) -> None:
    """For developers: write the revision that brings the schema to what the models in
    digest/store/_schema.py say (Alembic autogenerate; review it before committing)."""
    from ..store import new_revision

    setup_logging(0)
    try:
        path = new_revision(message)
    except DigestError as exc:
        click.echo(f"digest: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if path is None:
        click.echo("the models and the revisions agree: nothing to write")
        return
    click.echo(f"wrote {path}: read it, adjust it if needed, and commit it with the model")


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
