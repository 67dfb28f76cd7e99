"""Crash safety: `digest run` killed with SIGKILL while sending, then run again.

Every subscriber must end up with the edition; a subscriber who got two copies (the one
message per connection whose fate was unknown at the kill) got the same Message-ID twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from digest.delivery import message_id
from digest.store import Store
from tests.conftest import FEEDS, write_config, write_subscriber
from tests.smtpserver import SmtpServer
from tests.test_send import parse

EDITION = "2026-06-12"
EDITION_DATE = date(2026, 6, 12)
TOPICS = [
    "large language models, reasoning and instruction tuning",
    "robot manipulation, embodied agents and visual navigation",
    "speech recognition, text to speech and audio generation",
    "image and video diffusion models for generation and editing",
    "reinforcement learning for agents, planning and tool use",
    "efficient inference, quantization and long context transformers",
]
pytestmark = pytest.mark.slow


def make_project(
    tmp_path: Path,
    port: int,
    subscribers: int,
    connections: int,
    database: str = "sqlite:///digest.db",
) -> Path:
    cfg = write_config(
        tmp_path,
        f'database = "{database}"\n',
        smtp=(
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            f"connections = {connections}\nmax_per_connection = 5\n"
            "retries = 2\nretry_backoff = 0.1\ntimeout = 10\n"
            '[unsubscribe]\nurl = "https://digest.example.org/unsubscribe"\n'
            'mailto = "unsubscribe@example.org"\n'
        ),
        feeds=[("huggingface", str(FEEDS / "hf-daily-papers-2026-06-12.json"))],
    )
    for i in range(subscribers):
        write_subscriber(
            tmp_path / "subscribers",
            f"reader-{i:02d}",
            f'email = "reader{i:02d}@example.net"\nname = "Reader {i}"\n'
            f'interests = "{TOPICS[i % len(TOPICS)]}"\nmax_papers = 5\n',
        )
    return cfg


class Runs:
    """`digest run` subprocesses; output goes to files (a full pipe would block the run),
    and any run still alive at the end of the test is killed."""

    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": "crash-test-secret"}
        n = len(self.procs)
        with (
            open(self.cfg.parent / f"run{n}.out", "wb") as out,
            open(self.cfg.parent / f"run{n}.err", "wb") as err,
        ):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "digest",
                    "run",
                    "--config",
                    str(self.cfg),
                    "--edition",
                    EDITION,
                    *extra,
                ],
                cwd=self.cfg.parent,
                env=env,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        n = self.procs.index(proc)
        return "".join(
            (self.cfg.parent / f"run{n}.{k}").read_text(errors="replace") for k in ("out", "err")
        )

    def finish(self, proc: subprocess.Popen[bytes]) -> int:
        return proc.wait(timeout=180)

    def kill_after(self, srv: SmtpServer, received: int) -> None:
        """Start a run and SIGKILL it as soon as the server has stored ``received``
        messages in total, while the next reply is still on its way (a slow server)."""
        proc = self.start()
        deadline = time.monotonic() + 120
        while len(srv.messages) < received:
            assert proc.poll() is None, f"run ended early: {self.output(proc)}"
            assert time.monotonic() < deadline, f"no messages in time: {self.output(proc)}"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[[Path], Runs]]:
    made: list[Runs] = []

    def make(cfg: Path) -> Runs:
        made.append(Runs(cfg))
        return made[-1]

    yield make
    for r in made:
        r.close()


def database_url(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    if kind == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.mark.parametrize(
    ("connections", "kills", "database"),
    [(1, (1, 6, 7), "sqlite"), (3, (4, 11), "sqlite"), (3, (4, 11), "postgresql")],
)
def test_killed_runs_then_a_rerun_deliver_each_edition_once_per_id(
    tmp_path: Path,
    runs: Callable[[Path], Runs],
    request: pytest.FixtureRequest,
    connections: int,
    kills: tuple[int, ...],
    database: str,
) -> None:
    n = 14
    expected = {f"reader{i:02d}@example.net" for i in range(n)}
    url = database_url(request, database, tmp_path)
    with SmtpServer(delay=0.25) as srv:
        run = runs(make_project(tmp_path, srv.port, n, connections, url))
        for received in kills:
            run.kill_after(srv, received)
        srv.delay = 0.0
        final = run.start()
        assert run.finish(final) == 0, run.output(final)
        counts = Counter(r for _, rcpts, _ in srv.messages for r in rcpts)
        ids: dict[str, set[str]] = {}
        for _, rcpts, raw in srv.messages:
            ids.setdefault(rcpts[0], set()).add(parse(raw)["Message-ID"])

        assert set(counts) == expected  # everybody got the edition
        # Each kill left the message whose reply was on its way with an unknown fate (the
        # server had stored it): it was sent again. At most one per connection per kill.
        copies = sum(c - 1 for c in counts.values())
        assert len(kills) <= copies <= len(kills) * connections
        for rcpt, found in ids.items():
            assert found == {message_id(rcpt, EDITION_DATE, "example.org")}

        before = len(srv.messages)
        again = run.start()
        assert run.finish(again) == 0, run.output(again)
        assert len(srv.messages) == before  # a further run sends nothing

    store = Store(url)
    try:
        rows = store.deliveries(EDITION_DATE)
    finally:
        store.close()
    assert {d.email for d in rows} == expected
    assert {d.status for d in rows} == {"sent"}


def test_a_run_stopped_by_sigterm_exits_1_and_says_how_many_are_left(
    tmp_path: Path, runs: Callable[[Path], Runs]
) -> None:
    """SIGTERM mid-send (cron's -q): the run finishes the message in flight, says how many
    subscribers are left for the next run, and exits 1; the next run sends those."""
    n = 20
    expected = {f"reader{i:02d}@example.net" for i in range(n)}
    with SmtpServer(delay=0.2) as srv:
        run = runs(make_project(tmp_path, srv.port, n, 1))
        proc = run.start("-q")
        deadline = time.monotonic() + 120
        while len(srv.messages) < 3:
            assert proc.poll() is None, run.output(proc)
            assert time.monotonic() < deadline, run.output(proc)
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGTERM)
        assert run.finish(proc) == 1, run.output(proc)  # was 0
        sent = len(srv.messages)
        out = run.output(proc)  # the report on stdout, its problems on stderr
        assert f"delivery via 127.0.0.1:{srv.port}: {sent} sent" in out
        assert f"stopped before the end: {n - sent} subscriber(s) left for the next run" in out
        srv.delay = 0.0
        again = run.start("-q")
        assert run.finish(again) == 0, run.output(again)
        counts = Counter(r for _, rcpts, _ in srv.messages for r in rcpts)
    assert counts == dict.fromkeys(expected, 1)
