"""``digest run --workers N``: N processes share one edition through the database.

The parent holds the run lock and fetches the feeds once; each worker is a ``digest run``
of its own (no lock, no fetch) that takes batches of the due subscribers in the database
(``due_claim``) and ranks, renders and sends those. The relay's rate per second holds for
all of them (they book their slots in the database); its hourly limit is divided between
them. A SIGTERM is passed on to every worker; a worker that dies leaves
what it held to the others (taken back at once: its process is gone), and when they are
done, one more worker is started to send what is left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import date

import click

from ..config import Config
from ._common import EXIT_OK, EXIT_PARTIAL


def run_workers(
    cfg: Config, workers: int, edition: date | None, stop: threading.Event, verbose: list[str]
) -> int:
    args = [sys.executable, "-m", "digest", "run", "--config", str(cfg.path), "--no-fetch"]
    args += ["--worker", str(workers), *verbose]
    if edition is not None:
        args += ["--edition", edition.isoformat()]
    procs = [subprocess.Popen(args) for _ in range(workers)]
    click.echo(f"{workers} workers: pids {' '.join(str(p.pid) for p in procs)}", err=True)
    stopped = False
    while any(p.poll() is None for p in procs):
        if stop.wait(0.2) and not stopped:
            stopped = True
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
    codes = [p.wait() for p in procs]
    for n, (p, code) in enumerate(zip(procs, codes, strict=True), 1):
        if code < 0:
            click.echo(
                f"worker {n} (pid {p.pid}) was killed by {signal.Signals(-code).name}; one "
                "more worker sends what it left",
                err=True,
            )
    if any(c < 0 for c in codes) and not stop.is_set():
        # The others may have ended before it died: what it held is taken back now (its
        # process is gone), not at the next run.
        finisher = subprocess.Popen(args)
        while finisher.poll() is None:
            if stop.wait(0.2):
                finisher.send_signal(signal.SIGTERM)
                break
        codes.append(finisher.wait())
    if all(c == EXIT_OK for c in codes):
        return EXIT_OK
    return max(c if c > 0 else EXIT_PARTIAL for c in codes if c != EXIT_OK)


def share_rates(cfg: Config, workers: int) -> Config:
    """This worker's part of the relay's hourly limit: 1/``workers`` of it. (The rate per
    second is shared through the database: every run books its slots on the relay.)"""
    if workers <= 1 or not cfg.smtp.rate_per_hour:
        return cfg
    per_hour = max(cfg.smtp.rate_per_hour // workers, 1)
    smtp = cfg.smtp.model_copy(update={"rate_per_hour": per_hour})
    return cfg.model_copy(update={"smtp": smtp})
