"""Database trouble as one line, and nothing lost: a SQLite file locked by another process
(at the start of a run, and in the middle of sending), a full disk (under the database, and
under the outbox), a file that is not a database, a folder that does not exist.

Each is a real `digest run` process against the loopback SMTP server and a real database
file; the full disk is a small tmpfs (mounting one needs root: skipped otherwise).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.clock import utcnow
from digest.config import load
from digest.delivery import message_id
from digest.sources import fetch_all
from digest.store import Store
from tests.smtpserver import SmtpServer
from tests.test_claims import EDITION, EDITION_DATE, project

pytestmark = pytest.mark.slow
SECRET = "Zq3vN8xKp1LzR7mWc2YbH5sJd9FgT4uE"
N = 12


def start(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args, "--config", str(cfg)],
        cwd=cfg.parent,
        env={**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def digest(cfg: Path, *args: str) -> tuple[int, str, str]:
    proc = start(cfg, *args)
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def send(cfg: Path) -> tuple[int, str, str]:
    return digest(cfg, "run", "--edition", EDITION, "--no-fetch")


def prepared(folder: Path, port: int, database: Path, timeout: float = 0.5) -> Path:
    """A project whose papers and edition are in the database already (fetched here, not
    by a process of its own: each costs seconds)."""
    cfg = project(folder, port, database, N, 1)
    cfg.write_text(cfg.read_text().replace(f"{database}", f"{database}?timeout={timeout}"))
    store = Store(f"sqlite:///{database}")
    try:
        assert not fetch_all(load(cfg), store, utcnow).errors
        assert store.edition_papers(EDITION_DATE, datetime.now(UTC))
    finally:
        store.close()
    return cfg


def one_line_error(err: str, *words: str) -> str:
    """The run's error: the last line of stderr, in words, and no traceback anywhere."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("digest: error: "), err
    for word in words:
        assert word in last, last
    return last


def sent_rows(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {e for (e,) in db.execute("SELECT email FROM delivery WHERE status = 'sent'")}


def check_nothing_lost(srv: SmtpServer, marked_sent: set[str]) -> None:
    """Everybody got the edition; what was marked sent had reached the server; a copy went
    out again only for a message not marked sent, with the same Message-ID."""
    counts = Counter(r for _, rcpts, _ in srv.messages for r in rcpts)
    assert set(counts) == {f"reader{i:02d}@example.net" for i in range(N)}
    assert all(counts[e] == 1 for e in marked_sent)
    for _, rcpts, raw in srv.messages:
        expected = message_id(rcpts[0], EDITION_DATE, "example.org")
        assert f"Message-ID: {expected}".encode() in raw


@contextmanager
def locked(database: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction on ``database`` (a sqlite3 shell left open)."""
    db = sqlite3.connect(database, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
    finally:
        db.rollback()
        db.close()


def test_a_locked_database_is_one_line_and_the_next_run_sends(tmp_path: Path) -> None:
    database = tmp_path / "digest.db"
    with SmtpServer() as srv:
        cfg = prepared(tmp_path, srv.port, database)
        with locked(database):
            began = time.monotonic()
            code, out, err = send(cfg)
            waited = time.monotonic() - began
        assert code == 1, out + err  # was a traceback after 30 s
        one_line_error(err, f"database {database}", "is locked by another process", "0.5 s")
        assert srv.messages == [] and waited < 30
        code, out, err = send(cfg)
        assert code == 0, out + err
        check_nothing_lost(srv, set())


def test_a_lock_taken_in_the_middle_of_sending_loses_nothing(tmp_path: Path) -> None:
    """Another process locks the database while the run is sending: the run cannot record
    an outcome, stops with one line, and marked nothing sent that was not; the next run
    sends the rest, and again only a message whose outcome was not recorded."""
    database = tmp_path / "digest.db"
    with SmtpServer(delay=0.2) as srv:
        cfg = prepared(tmp_path, srv.port, database)
        proc = start(cfg, "run", "--edition", EDITION, "--no-fetch")
        deadline = time.monotonic() + 120
        while len(srv.messages) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.005)
        with locked(database):
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        one_line_error(err, f"database {database}", "is locked")
        marked = sent_rows(database)
        received = {r for _, rcpts, _ in srv.messages for r in rcpts}
        assert marked <= received and len(received) < N
        srv.delay = 0.0
        code, out, err = send(cfg)
        assert code == 0, out + err
        check_nothing_lost(srv, marked)


def test_not_a_database_and_no_such_folder_are_config_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are notes, not a database\n" * 20)
    for database, words in (
        (text, "is not a SQLite database"),
        (tmp_path / "missing" / "digest.db", "cannot be opened"),
    ):
        cfg = project(tmp_path / database.stem, 2525, database, 1, 1)
        code, out, err = digest(cfg, "run")
        assert code == 2, out + err  # was 1, with a traceback
        one_line_error(err, f"database {database}", words, "check `database`")


# -- a full disk ---------------------------------------------------------------------------------


@contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (needs root), unmounted afterwards."""
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"a full disk is a small tmpfs, and mounting one needs root ({done.stderr})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` but ``leave`` bytes; the file that takes the room."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


# Room for no write at all (SQLite cannot even open its journal), and room for a few
# messages' outcomes (the disk fills in the middle of sending).
@pytest.mark.parametrize("room", [24_000, 120_000])
def test_a_full_disk_under_the_database_is_one_line_and_loses_nothing(
    tmp_path: Path, room: int
) -> None:
    with small_disk(tmp_path / "disk") as disk, SmtpServer() as srv:
        database = disk / "digest.db"
        cfg = prepared(tmp_path / "project", srv.port, database)
        filler = fill(disk, room)
        code, out, err = send(cfg)
        assert code == 1, out + err
        one_line_error(err, f"database {database}", "disk")
        filler.unlink()  # (a full disk cannot even be read: SQLite needs room for its -shm)
        marked = sent_rows(database)
        assert marked <= {r for _, rcpts, _ in srv.messages for r in rcpts}
        code, out, err = send(cfg)
        assert code == 0, out + err
        check_nothing_lost(srv, marked)


def test_a_full_disk_under_the_outbox_leaves_no_tmp_and_loses_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        database = tmp_path / "digest.db"
        cfg = prepared(tmp_path / "project", 2525, database)
        text = cfg.read_text().replace('host = "127.0.0.1"', 'host = ""')
        cfg.write_text(f'outbox = "{disk}/outbox"\n' + text)
        filler = fill(disk, 150_000)  # room for two or three messages
        code, out, err = send(cfg)
        assert code == 1, out + err
        one_line_error(err, "cannot write to the outbox", "No space left on device")
        files = sorted((disk / "outbox" / EDITION).iterdir())
        assert [f.name for f in files if not f.name.endswith(".eml")] == []  # no .tmp
        assert 0 < len(files) < N
        assert len(sent_rows(database)) == len(files)
        filler.unlink()
        code, out, err = send(cfg)
        assert code == 0, out + err
        assert len(list((disk / "outbox" / EDITION).iterdir())) == N
        assert len(sent_rows(database)) == N
