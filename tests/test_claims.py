"""Exactly once, whoever sends: claims in the delivery log.

Two `digest run` processes with their own configs (so their own run locks) on one database
(a SQLite file, a PostgreSQL server), started at the same moment, against one SMTP server:
each subscriber gets the edition once. Then the claim itself, on SQLite and PostgreSQL: a
claim held by a live run is never taken, nor one another run is making at that moment; one
left by a run that is gone is taken back (at once on this machine, after its lease
elsewhere), and a message whose tries keep ending with an unknown outcome is given up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.store import Store
from tests.conftest import FEEDS, write_config, write_subscriber
from tests.smtpserver import SmtpServer

EDITION = "2026-06-12"
EDITION_DATE = date(2026, 6, 12)
NOW = datetime(2026, 6, 12, 7, 30, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
TOPICS = [
    "large language models, reasoning and instruction tuning",
    "robot manipulation, embodied agents and visual navigation",
    "speech recognition, text to speech and audio generation",
    "image and video diffusion models for generation and editing",
]


def project(
    folder: Path, port: int, database: Path | str, subscribers: int, connections: int
) -> Path:
    """A project sending to ``port``; ``database`` a SQLite file or a database url."""
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    cfg = write_config(
        folder,
        f'database = "{url}"\n',
        smtp=(
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            f"connections = {connections}\nretries = 1\nretry_backoff = 0.1\ntimeout = 10\n"
        ),
        feeds=[("huggingface", str(FEEDS / "hf-daily-papers-2026-06-12.json"))],
    )
    for i in range(subscribers):
        write_subscriber(
            folder / "subscribers",
            f"reader-{i:02d}",
            f'email = "reader{i:02d}@example.net"\nname = "Reader {i}"\n'
            f'interests = "{TOPICS[i % len(TOPICS)]}"\nmax_papers = 3\nmin_score = 0\n',
        )
    return cfg


def digest(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("database", "connections"), [("sqlite", 3), ("postgresql", 1)])
def test_two_processes_on_one_database_send_each_message_once(
    tmp_path: Path, request: pytest.FixtureRequest, database: str, connections: int
) -> None:
    n = 20
    url = (
        request.getfixturevalue("pg_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'shared.db'}"
    )
    expected = {f"reader{i:02d}@example.net" for i in range(n)}
    # A slow server (each message stored, then its reply 50 ms later): both runs are
    # sending while the other is.
    with SmtpServer(delay=0.05, pipelining=True) as srv:
        configs = [project(tmp_path / name, srv.port, url, n, connections) for name in "ab"]
        # The papers and the edition exist before the runs start: what is tested here is
        # who sends what, not two fetches into one database at once.
        fetched = digest("fetch", "--config", str(configs[0]), cwd=tmp_path)
        out = fetched.communicate(timeout=120)[0]
        assert fetched.returncode == 0, out
        store = Store(url)
        try:
            assert store.edition_papers(EDITION_DATE, datetime.now(UTC))
        finally:
            store.close()

        runs = [
            digest("run", "--config", str(c), "--edition", EDITION, "--no-fetch", cwd=c.parent)
            for c in configs
        ]
        outputs = [p.communicate(timeout=180)[0] for p in runs]
        codes = [p.returncode for p in runs]
        counts = Counter(r for _, rcpts, _ in srv.messages for r in rcpts)

    assert codes == [0, 0], outputs
    assert counts == dict.fromkeys(expected, 1), outputs  # each subscriber exactly once
    sent = [int(re.search(r"(\d+) sent", out).group(1)) for out in outputs]  # type: ignore[union-attr]
    assert sum(sent) == n, outputs
    store = Store(url)
    try:
        rows = store.deliveries(EDITION_DATE)
    finally:
        store.close()
    assert {d.email for d in rows} == expected
    assert {d.status for d in rows} == {"sent"}


# -- the claim, on SQLite and PostgreSQL ----------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    yield s  # type: ignore[misc]
    s.close()


@pytest.fixture(params=[True, False], ids=["driver", "sqlalchemy"])
def direct(request: pytest.FixtureRequest) -> bool:
    """Claims straight through the driver (the send path: sqlite3 on SQLite, psycopg's
    pipeline on PostgreSQL) and through SQLAlchemy (the path any other database takes):
    the same statements, the same rows."""
    return bool(request.param)


ITEMS = [(f"r{i}@example.org", EDITION_DATE, f"<{i}@x>") for i in range(4)]
KEYS = {(e, d) for e, d, _ in ITEMS}
LIMIT = {"limit": 3, "gave_up": "outcome unknown"}


def test_a_claim_takes_each_row_once(store: Store, direct: bool) -> None:
    with (
        store.delivery_writer(direct=direct) as first,
        store.delivery_writer(direct=direct) as second,
    ):
        assert set(first.claim(ITEMS[:3], "one#1", NOW, LATER, **LIMIT)) == {
            (e, d) for e, d, _ in ITEMS[:3]
        }
        # Another claimant gets only the row nobody holds.
        assert set(second.claim(ITEMS, "two#1", NOW, LATER, **LIMIT)) == {ITEMS[3][:2]}
        # Rows sent are never taken again, by anyone, even once the claim has lapsed.
        done = [(e, d, "one#1", "sent", "250 ok", (), 1, 0) for e, d, _ in ITEMS[:3]]
        assert first.commit(done, [], NOW, LATER) == (3, set())
        much_later = NOW + timedelta(days=1)
        assert second.claim(ITEMS[:3], "two#2", much_later, much_later, **LIMIT) == {}


def test_a_claim_in_progress_elsewhere_is_judged_on_what_it_wrote(
    pg_url: str, direct: bool
) -> None:
    """PostgreSQL: another run is claiming two rows right now, its transaction not yet
    committed: one row it takes over from "deferred", one it inserts. A claim of the same
    rows (another process, another machine) judges each on what that run wrote once it
    commits, and takes neither; it takes the rows nobody holds. Only the database decides:
    a claim that read the rows first and then wrote them would take both."""
    import threading
    import time

    import psycopg

    (e0, _, _), (e1, _, mid1) = ITEMS[0], ITEMS[1]
    store = Store(pg_url)
    try:
        with store.delivery_writer() as w:
            assert set(w.claim(ITEMS[:1], "first#1", NOW, LATER, **LIMIT)) == {ITEMS[0][:2]}
            done = [(e0, EDITION_DATE, "first#1", "deferred", "451 later", (), 1, 0)]
            assert w.commit(done, [], NOW, LATER) == (1, set())
        url = pg_url.replace("postgresql+psycopg://", "postgresql://")
        got: dict[object, object] = {}

        def claim() -> None:
            with store.delivery_writer(direct=direct) as mine:
                got.update(mine.claim(ITEMS, "mine#1", NOW, LATER, **LIMIT))

        with psycopg.connect(url) as other, psycopg.connect(url, autocommit=True) as watch:
            other.execute(
                "UPDATE delivery SET status = 'sending', claimed_by = 'other#1', "
                "lease_until = %s WHERE email = %s AND edition = %s",
                (LATER, e0, EDITION_DATE),
            )
            other.execute(
                "INSERT INTO delivery (email, edition, status, message_id, attempts, papers, "
                "reply, updated_at, claimed_by, lease_until, in_flight, unknown_outcomes) "
                "VALUES (%s, %s, 'sending', %s, 0, 0, '', %s, 'other#1', %s, false, 0)",
                (e1, EDITION_DATE, mid1, NOW, LATER),
            )
            mine = threading.Thread(target=claim)
            mine.start()
            # until the claim waits for the other's rows (or is done without them)
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            deadline = time.monotonic() + 60
            while mine.is_alive() and not watch.execute(waiting).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline
                time.sleep(0.005)
            other.commit()
            mine.join(60)
        assert set(got) == {ITEMS[2][:2], ITEMS[3][:2]}
        rows = {d.email: d for d in store.deliveries(EDITION_DATE)}
        assert rows[e0].status == rows[e1].status == "sending"
    finally:
        store.close()


def test_a_lapsed_claim_is_taken_back_and_its_try_counts_as_unknown(
    store: Store, direct: bool
) -> None:
    email = ITEMS[0][0]
    with store.delivery_writer(direct=direct) as w:
        assert set(w.claim(ITEMS, "gone#1", NOW, LATER, **LIMIT)) == KEYS
        # One try was in flight when that run stopped answering.
        assert w.commit([], [(email, EDITION_DATE, "gone#1", 1, 0)], NOW, LATER) == (0, set())
        # Before its lease ends, nobody else gets them ...
        assert w.claim(ITEMS, "next#1", LATER - timedelta(seconds=1), LATER, **LIMIT) == {}
        # ... after it, they are taken back; the try in flight counts as unknown.
        after = LATER + timedelta(seconds=1)
        taken = w.claim(ITEMS, "next#2", after, after + timedelta(minutes=5), **LIMIT)
        assert set(taken) == KEYS
        assert taken[(email, EDITION_DATE)][1:3] == (1, 1)  # attempts, unknown
        assert taken[(ITEMS[1][0], EDITION_DATE)][1:3] == (0, 0)
        # A claim named dead (its run is known to have ended) is taken back at once.
        assert w.claim(ITEMS, "third#1", after, after, **LIMIT) == {}
        assert set(w.claim(ITEMS, "third#2", after, after, dead={"next#2"}, **LIMIT)) == KEYS


def test_a_message_whose_tries_end_unknown_too_often_is_given_up(
    store: Store, direct: bool
) -> None:
    email, key = ITEMS[0][0], ITEMS[0][:2]
    with store.delivery_writer(direct=direct) as w:
        for run in range(3):  # each run starts a try and dies before its outcome is logged
            at = NOW + timedelta(hours=run)
            taken = w.claim(ITEMS[:1], f"run{run}#1", at, at, dead={f"run{run - 1}#1"}, **LIMIT)
            assert taken[key] == ("sending", run, run, "")
            assert w.commit([], [(email, EDITION_DATE, f"run{run}#1", run + 1, run)], at, at) == (
                0,
                set(),
            )
        at = NOW + timedelta(days=1)
        taken = w.claim(ITEMS[:1], "last#1", at, at, dead={"run2#1"}, **LIMIT)
        assert taken[key] == ("failed", 3, 3, "outcome unknown")
        # ... and it is never taken again.
        assert w.claim(ITEMS[:1], "after#1", at + timedelta(days=1), at, **LIMIT) == {}
    row = store.delivery(email, EDITION_DATE)
    assert row is not None and (row.status, row.reply) == ("failed", "outcome unknown")


@pytest.mark.parametrize("where", ["client", "server"])
def test_a_transaction_that_fails_changes_nothing_and_the_writer_goes_on(
    store: Store, direct: bool, where: str
) -> None:
    """An outcome, its papers and the tries logged with it are one transaction: when a
    part of it fails (a value the driver cannot send, or one the server refuses), none of
    it is written, and the next transaction on the same connection works (on
    PostgreSQL's pipeline, the failed transaction is rolled back, not left open)."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    if where == "server" and store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite takes any integer")
    email, other = ITEMS[0][0], ITEMS[1][0]
    with store.delivery_writer(direct=direct) as w:
        assert set(w.claim(ITEMS[:2], "run#1", NOW, LATER, **LIMIT)) == {
            (email, EDITION_DATE),
            (other, EDITION_DATE),
        }
        bad_paper: Any = object() if where == "client" else "p2"
        done = (email, EDITION_DATE, "run#1", "sent", "250 ok", ("p1", bad_paper), 1, 0)
        attempts = 1 if where == "client" else 2**40  # out of range for the column
        with pytest.raises((SQLAlchemyError, sqlite3.Error)):
            w.commit([done], [(other, EDITION_DATE, "run#1", attempts, 0)], NOW, LATER)
        assert w.statuses(EDITION_DATE, [email, other]) == {email: "sending", other: "sending"}
        good = (email, EDITION_DATE, "run#1", "sent", "250 ok", ("p1", "p2"), 1, 0)
        assert w.commit([good], [(other, EDITION_DATE, "run#1", 1, 0)], NOW, LATER) == (1, set())
        assert w.statuses(EDITION_DATE, [email]) == {email: "sent"}
    assert store.sent_paper_ids(email) == {"p1", "p2"}
    assert store.sent_paper_ids(other) == set()


def test_a_claim_of_a_process_on_this_machine_lapses_when_it_ends(tmp_path: Path) -> None:
    """A real process: alive, its claims hold; gone, they are taken back without waiting
    for the lease (the crash tests rely on this)."""
    from digest.delivery._claims import Claimant, gone, machine, start_time

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = start_time(proc.pid)
        assert started  # this machine has /proc (Linux)
        token = f"host:{machine()}:{proc.pid}:{started}:1#1"
        assert not gone(token)
        assert gone(f"host:{machine()}:{proc.pid}:{int(started) + 1}:1#1")  # pid reused
        assert not gone(f"host:0123456789ab:{proc.pid}:{started}:1#1")  # another machine
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert gone(token)
    # In this process: a run's claims hold while it is open, and lapse once it is closed.
    run = Claimant()
    mine = run.token()
    assert not gone(mine)
    run.close()
    assert gone(mine)


def test_the_send_paths_plans_follow_the_log_as_it_grows(pg_url: str) -> None:
    """Early in a first run the delivery log holds a few hundred rows, and the send path's
    statements run often enough for the driver to prepare them; as the log grows, they
    must go on finding each row by its index, not scan the table (with a plan kept from
    then: a millisecond a statement per 10,000 rows)."""
    import psycopg

    def add_rows(first: int, last: int) -> None:
        raw.execute(
            "INSERT INTO delivery (email, edition, status, message_id, attempts, papers, "
            "reply, updated_at, claimed_by, in_flight, unknown_outcomes) "
            "SELECT 'r' || g || '@example.org', %s, 'sent', '', 1, 1, '', now(), 'x', "
            "false, 0 FROM generate_series(%s::int, %s::int) AS g",
            (EDITION_DATE, first, last),
        )

    store = Store(pg_url)
    try:
        with store.delivery_writer() as w:
            raw = w.conn.connection.dbapi_connection
            assert isinstance(raw, psycopg.Connection)
            add_rows(1, 300)
            for i in range(15):  # prepared after five runs; one plan for all after five more
                items = [
                    (f"early{i}.{k}@example.org", EDITION_DATE, f"<{i}.{k}>") for k in range(4)
                ]
                w.claim(items, f"run#{i}", NOW, LATER, **LIMIT)
                done = [(e, d, f"run#{i}", "sent", "250 ok", ("p1",), 1, 0) for e, d, _ in items]
                assert w.commit(done, [], NOW, LATER) == (4, set())
            add_rows(301, 20_000)
            (name,) = raw.execute(
                "SELECT name FROM pg_prepared_statements "
                "WHERE statement LIKE 'UPDATE delivery AS t SET status%%'"
            ).fetchone() or ("",)
            assert name  # the outcomes' statement is prepared
            plan = raw.execute(
                f"EXPLAIN EXECUTE {name}(now(), '{{a@example.org}}', '{{2026-06-12}}', '{{x}}', "
                "'{sent}', '{ok}', '{1}', '{1}', '{0}')"
            ).fetchall()
            text = "\n".join(row[0] for row in plan)
            assert "Index Scan" in text and "Seq Scan" not in text, text
    finally:
        store.close()
