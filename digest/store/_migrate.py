"""The schema's version: checked when a store opens, brought up to date by ``digest db upgrade``.

The revisions are Alembic's, in ``_migrations/versions``. A database is in one of four
states, and opening a ``Store`` does one thing for each:

- **new** (none of our tables, no ``alembic_version``): the tables are created as the models
  say and stamped with the newest revision (Alembic's "create_all, then stamp" recipe; a
  test checks that the models and the revisions agree);
- **up to date** (at the newest revision): nothing;
- **behind** (an older revision, or our tables without ``alembic_version``: made before
  the project had migrations): refused with ``SchemaError``, whose message says to run
  ``digest db upgrade``;
- **ahead** (a revision this release does not know, written by a newer one): refused too.

The newest revision is read from the revision files' text, so opening a store at the
newest revision costs two small queries and never imports Alembic.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from ..errors import DatabaseError, SchemaError
from . import _schema  # noqa: F401  (the tables, registered on SQLModel.metadata)
from ._engine import make_engine, reaching, shown

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("_migrations")
VERSIONS = MIGRATIONS / "versions"
VERSION_TABLE = "alembic_version"
_PG_LOCK = 0x6469676573740001  # pg_advisory_xact_lock key: schema changes, one at a time
UPGRADE_HINT = "run `digest db upgrade` (back the database up first)"

_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]*)?=\s*(.+)$", re.M)


@functools.lru_cache(maxsize=1)
def revisions() -> dict[str, tuple[str, ...]]:
    """Every revision in ``versions/`` and the revisions it follows, read from the files'
    text (``revision = "..."``, ``down_revision = "..." | None | ("a", "b")``)."""
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted(VERSIONS.glob("*.py")):
        body = path.read_text(encoding="utf-8")
        rev = _REVISION.search(body)
        if rev is None:
            continue
        down = _DOWN.search(body)
        out[rev.group(1)] = tuple(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1) if down else ""))
    return out


def heads() -> tuple[str, ...]:
    """The revisions nothing follows: exactly one when the history is a line."""
    revs = revisions()
    after = {d for downs in revs.values() for d in downs}
    return tuple(sorted(r for r in revs if r not in after))


def head() -> str:
    found = heads()
    if len(found) != 1:
        raise SchemaError(
            f"the schema revisions in {VERSIONS} have {len(found)} heads ({', '.join(found)}); "
            "a revision must follow the newest one (set its down_revision)"
        )
    return found[0]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands."""

    current: tuple[str, ...]  # the revisions in alembic_version (empty: none recorded)
    head: str
    tables: frozenset[str]  # our tables the database has

    @property
    def new(self) -> bool:
        return not self.current and not self.tables

    @property
    def up_to_date(self) -> bool:
        return self.current == (self.head,)

    @property
    def known(self) -> bool:
        revs = revisions()
        return all(r in revs for r in self.current)

    def describe(self) -> str:
        if self.new:
            return "new (no tables yet)"
        if not self.current:
            return "made before schema migrations (no revision recorded)"
        at = ", ".join(self.current)
        if self.up_to_date:
            return f"at revision {at} (up to date)"
        if not self.known:
            return f"at revision {at}, unknown to this release (its newest: {self.head})"
        return f"at revision {at}; this release needs {self.head}"


def status(conn: Connection) -> SchemaStatus:
    ours = {t.name for t in SQLModel.metadata.sorted_tables}
    names = set(inspect(conn).get_table_names())
    current: tuple[str, ...] = ()
    if VERSION_TABLE in names:
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
        current = tuple(sorted(v for (v,) in rows))
    return SchemaStatus(current, head(), frozenset(names & ours))


def ensure(engine: Engine, url: str) -> None:
    """What a store does when it opens: create a new database's tables, accept an up-to-date
    one, refuse anything else with a one-line fix (``SchemaError``)."""
    with reaching(url):
        with engine.connect() as conn:
            st = status(conn)
        if st.new:
            st = _create(engine)
    if st.up_to_date:
        return
    if not st.known:
        raise SchemaError(
            f"database {shown(url)}: schema {st.describe()}; a newer digest wrote it: "
            "upgrade digest, or point `database` at another database"
        )
    raise SchemaError(f"database {shown(url)}: schema {st.describe()}; {UPGRADE_HINT}")


def _create(engine: Engine) -> SchemaStatus:
    """Create every table of a new database and record the newest revision, one process at
    a time (several workers may open a new database at once): the state is read again
    under a lock, and nothing is done when another process got there first."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        _lock(conn)
        st = status(conn)
        if st.new:
            SQLModel.metadata.create_all(conn)
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(
                _scripts(), st.head
            )
            st = status(conn)
        conn.commit()
    return st


def _lock(conn: Connection) -> None:
    """Hold the database's schema lock until the transaction ends: an advisory lock on
    PostgreSQL, the write lock on SQLite (``BEGIN IMMEDIATE``, waited for up to the busy
    timeout)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# -- upgrading --------------------------------------------------------------------------------


def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def _config(conn: Connection | None = None, *, autogenerate: bool = False) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = conn
    cfg.attributes["autogenerate"] = autogenerate
    return cfg


def configure_options(autogenerate: bool) -> dict[str, Any]:
    """``context.configure`` options for ``env.py``: batch mode (SQLite), compared types,
    SQLModel's string type written as ``sa.String()``, and no empty revision."""
    opts: dict[str, Any] = {
        "render_as_batch": True,
        "compare_type": True,
        "version_table": VERSION_TABLE,
        "render_item": _render_item,
    }
    if autogenerate:
        opts["process_revision_directives"] = _drop_empty
    return opts


def _render_item(kind: str, obj: Any, _autogen_context: Any) -> str | bool:
    """SQLModel's column types as plain SQLAlchemy ones, so a revision needs no sqlmodel."""
    from sqlmodel.sql import sqltypes

    if kind != "type":
        return False
    if isinstance(obj, sqltypes.AutoString):
        return "sa.String()"
    utc = getattr(sqltypes, "UTCDateTime", None)
    if utc is not None and isinstance(obj, utc):
        return "sa.DateTime(timezone=True)"
    return False


def _drop_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
    if directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []


@dataclass(frozen=True)
class Upgrade:
    before: SchemaStatus
    after: SchemaStatus
    backup: Path | None  # a copy of a SQLite database taken before the upgrade


def upgrade(url: str, *, replay: bool = False) -> Upgrade:
    """Bring the database at ``url`` to the newest revision (one process at a time). A
    database made before migrations is recognised by its tables and upgraded from the
    first revision, which creates only the tables it lacks. A SQLite file is copied first
    (``<file>.before-<revision>``). A new database gets the models' tables, or with
    ``replay`` is built by running every revision (to compare the two)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with reaching(url):
            with engine.connect() as conn:
                before = status(conn)
            if not before.known:
                raise SchemaError(
                    f"database {shown(url)}: schema {before.describe()}; "
                    "a newer digest wrote it: upgrade digest instead"
                )
            if before.up_to_date:
                return Upgrade(before, before, None)
            if before.new and not replay:
                return Upgrade(before, _create(engine), None)
            backup = None if before.new else _backup(engine, before)
            with engine.connect() as conn:
                _lock(conn)
                command.upgrade(_config(conn), "head")
                conn.commit()
                after = status(conn)
            return Upgrade(before, after, backup)
    finally:
        engine.dispose()


def _backup(engine: Engine, before: SchemaStatus) -> Path | None:
    """A copy of a SQLite database file next to it, made with SQLite's backup API."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    path = Path(engine.url.database)
    if not path.exists():
        return None
    dest = path.with_name(f"{path.name}.before-{'-'.join(before.current) or 'migrations'}")
    src = sqlite3.connect(path)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    return dest


def schema_status(url: str) -> SchemaStatus:
    engine = make_engine(url)
    try:
        with reaching(url), engine.connect() as conn:
            return status(conn)
    finally:
        engine.dispose()


# -- for developers: a new revision from the models -------------------------------------------


def new_revision(message: str) -> Path | None:
    """Write a revision that takes a database at the newest revision to what the models in
    ``_schema`` say (Alembic's autogenerate, against a scratch SQLite database upgraded
    through every revision). Returns its file, formatted with ruff when ruff is installed,
    or None when the models and the revisions already agree."""
    from alembic import command

    if not VERSIONS.exists() or not _writable(VERSIONS):
        raise DatabaseError(f"{VERSIONS} is not writable: run this from a source checkout")
    before = set(VERSIONS.glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="digest-revision-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                command.upgrade(_config(conn), "head")
                conn.commit()
                command.revision(_config(conn, autogenerate=True), message, autogenerate=True)
        finally:
            engine.dispose()
    made = sorted(set(VERSIONS.glob("*.py")) - before)
    revisions.cache_clear()
    if not made:
        return None
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if Path(ruff).exists():
        for args in (["check", "--fix", "--quiet"], ["format", "--quiet"]):
            subprocess.run([ruff, *args, str(made[0])], check=False)
    return made[0]


def _writable(path: Path) -> bool:
    try:
        probe = path / ".probe"
        probe.write_text("")
        probe.unlink()
        return True
    except OSError:
        return False
