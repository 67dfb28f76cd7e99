"""The schema's revisions: they agree with the models, a database made by the previous
release is refused by `digest run` and brought up to date by `digest db upgrade` without
losing a row, and a new database is created once however many processes open it."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from digest.cli import main
from digest.errors import DatabaseError, SchemaError
from digest.store import Store, schema_status, upgrade_schema

from .conftest import DATA, DATABASES, ROOT, write_config
from .pgserver import PgServer

PREVIOUS = DATA / "db" / "previous-release.db"  # provenance: tests/data/db/SOURCES.md


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(params=DATABASES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any table: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"empty_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name)
    server.drop_database(name)


def test_the_models_and_the_revisions_agree(empty_url: str) -> None:
    """A database built by running every revision is what the models describe. When this
    fails, a table or column was changed in digest/store/_schema.py without a revision:
    run `digest db revision -m "what changed"` and commit the file it writes."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    done = upgrade_schema(empty_url, replay=True)
    assert done.after.up_to_date
    engine = create_engine(empty_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == [], (
        "the models and the revisions disagree; run `digest db revision -m ...`: " + repr(diff)
    )


def test_the_revisions_are_one_line_and_read_alike_by_alembic() -> None:
    """One head (two revisions made side by side both follow the same one: the later must
    follow the other), and the quick reading a store does when it opens agrees with
    Alembic's own."""
    from alembic.script import ScriptDirectory

    from digest.store._migrate import MIGRATIONS, heads, revisions

    scripts = ScriptDirectory(str(MIGRATIONS))
    assert heads() == tuple(scripts.get_heads()) and len(heads()) == 1, (
        f"several heads {heads()}: set the newer revision's down_revision to the other"
    )
    walked = {s.revision: tuple(sorted(s._all_down_revisions)) for s in scripts.walk_revisions()}
    assert {r: tuple(sorted(d)) for r, d in revisions().items()} == walked


def _counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        db.close()


def _rows(path: Path, table: str, like: Path) -> list[tuple[object, ...]]:
    """The rows of ``table``, in the columns it has in the database at ``like``."""
    db = sqlite3.connect(like)
    try:
        names = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
    finally:
        db.close()
    db = sqlite3.connect(path)
    try:
        columns = ", ".join(f'"{n}"' for n in names)
        return sorted(db.execute(f'SELECT {columns} FROM "{table}"').fetchall(), key=repr)
    finally:
        db.close()


def test_a_database_made_by_the_previous_release_is_refused_then_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "test-secret")
    db = tmp_path / "digest.db"
    shutil.copy(PREVIOUS, db)
    cfg = write_config(
        tmp_path,
        f'database = "sqlite:///{db}"\noutbox = "outbox"\n',
        feeds=[("huggingface", str(DATA / "feeds" / "hf-daily-papers-2026-06-12.json"))],
    )
    for f in (ROOT / "demo" / "subscribers").glob("*.toml"):
        shutil.copy(f, tmp_path / "subscribers" / f.name)
    before = _counts(db)
    assert "vote" not in before and "alembic_version" not in before

    refused = cli("run", "--config", str(cfg), "--edition", "2026-06-12", "--no-fetch")
    assert refused.exit_code == 2
    [line] = refused.output.strip().splitlines()
    assert "made before schema migrations" in line and "run `digest db upgrade`" in line
    assert _counts(db) == before  # nothing written, nothing sent
    assert not (tmp_path / "outbox").exists()

    status = cli("db", "status", "--config", str(cfg))
    assert status.exit_code == 1 and "digest db upgrade" in status.output

    done = cli("db", "upgrade", "--config", str(cfg))
    assert done.exit_code == 0, done.output
    assert "now at revision" in done.output and "(up to date)" in done.output
    backup = tmp_path / "digest.db.before-migrations"
    assert backup.exists() and _counts(backup) == before

    after = _counts(db)
    assert {k: v for k, v in after.items() if k in before} == before  # every row kept
    assert after["vote"] == after["subscriber_file"] == 0 and after["alembic_version"] == 1
    db_ = sqlite3.connect(db)
    claims = db_.execute("SELECT DISTINCT claimed_by, in_flight, unknown_outcomes FROM delivery")
    assert claims.fetchall() == [("", 0, 0)]  # the claim columns, with their defaults
    db_.close()
    for table in ("paper", "delivery", "sent_paper", "edition", "suppression", "run"):
        assert _rows(db, table, backup) == _rows(backup, table, backup)
    again = cli("db", "upgrade", "--config", str(cfg))
    assert again.exit_code == 0 and "already up to date" in again.output

    # The upgraded database works: the edition that went out is not sent again, the
    # rows a relay and a crash left are still there to finish, votes can be kept.
    rerun = cli("run", "--config", str(cfg), "--edition", "2026-06-12", "--no-fetch")
    assert rerun.exit_code == 0, rerun.output
    assert "nothing new to send" in rerun.output
    assert not list((tmp_path / "outbox").rglob("*.eml"))
    store = Store(f"sqlite:///{db}")
    try:
        left = {d.email: d.status for d in store.deliveries(date(2026, 6, 13))}
        assert left == {"ada@example.org": "deferred", "chloe@example.org": "sending"}
        assert store.suppressed() == {"ben@example.org"}
        assert len(store.sent_paper_ids("ada@example.org")) == 8
        store.set_vote("ada@example.org", "2406.00001", 1, datetime(2026, 6, 13, tzinfo=UTC))
        assert store.votes_of(["ada@example.org"]) == {"ada@example.org": {"2406.00001": 1}}
    finally:
        store.close()


def test_a_postgres_database_made_before_migrations_is_upgraded(pg_server: PgServer) -> None:
    """The previous release's tables, made on PostgreSQL, with rows."""
    name = f"legacy_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        engine = create_engine(url)
        before = ("paper", "feed_state", "edition", "delivery", "sent_paper", "run", "suppression")
        old = [t for t in SQLModel.metadata.sorted_tables if t.name in before]
        SQLModel.metadata.create_all(engine, tables=old)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO suppression (email, at, reason) VALUES (:e, :a, :r)"),
                {"e": "ben@example.org", "a": datetime(2026, 6, 1, tzinfo=UTC), "r": "asked"},
            )
        engine.dispose()
        with pytest.raises(SchemaError, match=r"made before schema migrations.*db upgrade"):
            Store(url)
        done = upgrade_schema(url)
        assert not done.before.current and done.after.up_to_date and done.backup is None
        store = Store(url)
        try:
            assert store.suppressed() == {"ben@example.org"}
            store.set_vote("ada@example.org", "p1", -1, datetime(2026, 6, 2, tzinfo=UTC))
        finally:
            store.close()
    finally:
        pg_server.drop_database(name)


def test_a_schema_from_a_newer_release_is_refused(empty_url: str) -> None:
    db_url = empty_url
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d0000cafe'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="a newer digest wrote it"):
        Store(db_url)
    with pytest.raises(SchemaError, match="upgrade digest"):
        upgrade_schema(db_url)
    assert not schema_status(db_url).known


def test_a_new_database_opened_by_several_processes_at_once_is_made_once(
    empty_url: str,
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            Store(empty_url).close()
        except BaseException as exc:  # collected, then reported by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    st = schema_status(empty_url)
    assert st.up_to_date and st.current == (st.head,)


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    url = "postgresql+psycopg://digest:hunter2@127.0.0.1:1/digest"
    with pytest.raises(DatabaseError) as info:
        Store(url)
    message = str(info.value)
    assert "hunter2" not in message and "***" in message
    assert "\n" not in message and "127.0.0.1:1" in message
