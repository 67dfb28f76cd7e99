"""Many senders, one edition: `digest run --workers 3` divides the due subscribers through
the database; one worker killed with SIGKILL mid-send, then a rerun: everyone gets the
edition exactly once but for the messages in flight at the kill, whose copies carry the
same Message-ID. On SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from digest.delivery import message_id
from digest.store import Store
from tests.conftest import DATABASES
from tests.smtpserver import SmtpServer
from tests.test_crash import EDITION, EDITION_DATE, make_project
from tests.test_send import parse

pytestmark = pytest.mark.slow
CONNECTIONS = 2


def start(cfg: Path, n: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": "crash-test-secret-0123456789abcdef"}
    with (
        open(cfg.parent / f"run{n}.out", "wb") as out,
        open(cfg.parent / f"run{n}.err", "wb") as err,
    ):
        cmd = [sys.executable, "-m", "digest", "run", "--config", str(cfg), "--edition", EDITION]
        return subprocess.Popen(
            [*cmd, *extra],
            cwd=cfg.parent,
            env=env,
            stdout=out,
            stderr=err,
        )


def output(cfg: Path, n: int) -> str:
    return "".join((cfg.parent / f"run{n}.{k}").read_text(errors="replace") for k in ("out", "err"))


@pytest.mark.parametrize("database", DATABASES)
def test_three_workers_one_killed_then_a_rerun_send_everyone_once(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    n = 240
    expected = {f"reader{i:02d}@example.net" for i in range(n)}
    url = (
        request.getfixturevalue("pg_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'digest.db'}"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with SmtpServer(delay=0.05) as srv:
            cfg = make_project(tmp_path, srv.port, n, CONNECTIONS, url)
            parent = start(cfg, 0, "--workers", "3")
            procs.append(parent)
            deadline = time.monotonic() + 150
            pids: list[int] = []
            while not pids or len(srv.messages) < 8:
                assert parent.poll() is None, output(cfg, 0)
                assert time.monotonic() < deadline, output(cfg, 0)
                found = re.search(r"3 workers: pids (\d+) (\d+) (\d+)", output(cfg, 0))
                pids = [int(p) for p in found.groups()] if found else []
                time.sleep(0.01)
            os.kill(pids[1], signal.SIGKILL)  # mid-send: its replies are 0.05 s away
            assert parent.wait(timeout=180) == 1, output(cfg, 0)
            assert f"pid {pids[1]}) was killed by SIGKILL; one more worker" in output(cfg, 0)
            srv.delay = 0.0
            rerun = start(cfg, 1)
            procs.append(rerun)
            assert rerun.wait(timeout=180) == 0, output(cfg, 1)
            counts = Counter(r for _, rcpts, _ in srv.messages for r in rcpts)
            ids: dict[str, set[str]] = {}
            for _, rcpts, raw in srv.messages:
                ids.setdefault(rcpts[0], set()).add(parse(raw)["Message-ID"])
            before = len(srv.messages)
            again = start(cfg, 2)
            procs.append(again)
            assert again.wait(timeout=180) == 0, output(cfg, 2)
            assert len(srv.messages) == before  # a further run sends nothing
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)

    assert set(counts) == expected  # everybody got the edition
    # Only the killed worker's messages in flight (one per connection) may have gone twice.
    assert sum(c - 1 for c in counts.values()) <= CONNECTIONS
    for rcpt, found_ids in ids.items():
        assert found_ids == {message_id(rcpt, EDITION_DATE, "example.org")}
    store = Store(url)
    try:
        rows = store.deliveries(EDITION_DATE)
    finally:
        store.close()
    assert {d.email for d in rows} == expected
    assert {d.status for d in rows} == {"sent"}


def test_runs_sharing_an_edition_take_disjoint_parts(db_url: str) -> None:
    """Two runs claim the same subscribers: each gets a part, none twice; what a run that
    is gone held is taken by another, what a live run holds is not; on PostgreSQL a row
    another run is claiming right now is skipped, not waited for (SKIP LOCKED)."""
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 6, 12, 7, tzinfo=UTC)
    until = now + timedelta(minutes=15)
    emails = [f"r{i:03d}@example.org" for i in range(300)]
    store = Store(db_url)
    try:
        a = store.claim_due(EDITION_DATE, emails[:200], "run-a", now, until)
        b = store.claim_due(EDITION_DATE, emails[100:], "run-b", now, until)
        assert a == set(emails[:200]) and b == set(emails[200:])
        assert store.claim_due(EDITION_DATE, emails, "run-a", now, until) == a  # its own again
        # run-a is gone: its subscribers go to run-b's second pass, run-b's stay its own.
        left = store.claim_due(
            EDITION_DATE, emails, "run-b", now, until, gone=lambda o: o == "run-a", again=False
        )
        assert left == a
        assert store.claim_due(EDITION_DATE, emails, "run-c", now, until) == set()
        # A lapsed claim is free for anyone.
        later = until + timedelta(seconds=1)
        assert store.claim_due(EDITION_DATE, emails[:5], "run-c", later, later) == set(emails[:5])
        if db_url.startswith("postgresql"):
            import psycopg

            url = db_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url) as other:  # another run, in the middle of its claim
                other.execute(
                    "SELECT email FROM due_claim WHERE email = %s FOR UPDATE", (emails[5],)
                )
                started = time.monotonic()
                got = store.claim_due(
                    EDITION_DATE, emails[5:10], "run-d", later, later + timedelta(minutes=1)
                )
                assert time.monotonic() - started < 5  # not blocked by the lock
                assert got == set(emails[6:10])  # the locked row was skipped
                other.rollback()
    finally:
        store.close()


def test_the_relays_rate_per_second_holds_for_all_runs_together(db_url: str) -> None:
    """Two runs (each its own store) booking sending slots on one relay at once: the blocks
    they get never overlap, so together they keep the relay's rate (20/s here) as one run
    does; and the rate limit sends in the slots it booked."""
    import threading as _threading
    from datetime import UTC, datetime, timedelta

    from digest.config import Config, Sender, Smtp
    from digest.delivery._deliver import _pace
    from digest.delivery._pool import RateLimit

    interval = 0.05
    blocks: list[tuple[datetime, datetime]] = []
    lock = _threading.Lock()

    def one_run() -> None:
        store = Store(db_url)
        try:
            for _ in range(10):
                first = store.reserve_slots("relay:25:", datetime.now(UTC), 3, interval)
                with lock:
                    blocks.append((first, first + timedelta(seconds=3 * interval)))
        finally:
            store.close()

    runs = [_threading.Thread(target=one_run) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=60)
    blocks.sort()
    assert len(blocks) == 20
    for (_, end), (start, _) in itertools.pairwise(blocks):
        assert start >= end  # never two runs in one slot
    assert blocks[-1][1] - blocks[0][0] >= timedelta(seconds=20 * 3 * interval)

    cfg = Config(
        sender=Sender(address="digest@example.org"),
        smtp=Smtp(host="relay.example.org", rate_per_second=1 / interval),
    )
    due: list[float] = []
    store = Store(db_url)
    try:
        rate = RateLimit(1 / interval, 0, lambda s: due.append(s), reserve=_pace(store, cfg))
        for _ in range(4):
            rate.wait()
    finally:
        store.close()
    assert all(0 < s <= 0.2 + 0.05 for s in due)  # never later than its booked slot
