"""`digest run`, as the command line runs it, for bench/send_throughput.py.

The measured process: this file starts the real command (``digest.cli.main``, as
``digest run --config CONFIG``) in a fresh interpreter, so its start-up, imports and every
cache start cold. It adds only what the benchmark reads back: the bytes handed to SMTP
(for smtp-source's message size), the wall-clock time of the run itself (the rest of the
process is start-up), the stages' times (``digest.timing``), and optionally a pyinstrument
profile or the resident size every few seconds. The figures go, as JSON, to the file
named by ``DIGEST_BENCH_OUT``.

Run: python bench/_run_digest.py CONFIG [--profile FILE] [--rss-every S]
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _trace_rss(every: float, t0: float) -> None:
    """Print the resident size every ``every`` seconds, and the last stage timed."""
    import resource

    from digest import timing

    last = [""]
    add = timing.add

    def tracking(name: str, *a: Any) -> None:
        if name not in ("smtp", "log", "claim"):
            last[0] = name
        add(name, *a)

    def trace() -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * page / 2**20
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            now = time.perf_counter() - t0
            print(f"  RSS {now:7.2f} s: {rss:4.0f} MB (peak {peak:4.0f}) {last[0]}", flush=True)
            time.sleep(every)

    timing.add = tracking  # type: ignore[assignment]
    threading.Thread(target=trace, daemon=True).start()


def main() -> int:
    config = sys.argv[1]
    opts = sys.argv[2:]
    profile = opts[opts.index("--profile") + 1] if "--profile" in opts else ""
    rss_every = float(opts[opts.index("--rss-every") + 1]) if "--rss-every" in opts else 0.0
    started = time.perf_counter()

    from digest import pipeline, timing
    from digest.cli import main as cli
    from digest.delivery import _smtp

    sent = [0, 0]
    send = _smtp.SmtpConnection.send

    def counting_send(self: Any, sender: str, rcpt: str, data: bytes, **kw: Any) -> Any:
        sent[0] += len(data)
        sent[1] += 1
        return send(self, sender, rcpt, data, **kw)

    _smtp.SmtpConnection.send = counting_send  # type: ignore[method-assign]
    span = [0.0, 0.0]
    run = pipeline.run

    def timed_run(*a: Any, **kw: Any) -> Any:
        span[0] = time.perf_counter()
        try:
            return run(*a, **kw)
        finally:
            span[1] = time.perf_counter()

    pipeline.run = timed_run  # type: ignore[assignment]
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    if rss_every:
        _trace_rss(rss_every, started)
    code = 0
    try:
        cli(["run", "--config", config, "--no-fetch"], prog_name="digest")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, show_all=False))
    out = {
        "code": code,
        "run_wall": span[1] - span[0],
        "before_run": span[0] - started,
        "bytes": sent[0],
        "messages": sent[1],
        "stages": [(s.name, s.wall, s.cpu, s.count) for s in timing.totals()],
    }
    Path(os.environ["DIGEST_BENCH_OUT"]).write_text(json.dumps(out), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
