"""Per-stage timers: each thread adds to its own table, ``totals`` sums every thread's."""

from __future__ import annotations

import threading
import time

from digest import timing
from digest.timing import timed


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_totals_sum_every_thread_and_reset_clears_them() -> None:
    timing.reset()
    with timed("rank", 3):
        _spin(0.01)

    def work() -> None:
        for _ in range(5):
            with timed("smtp"):
                _spin(0.002)
        with timed("rank", 2):
            _spin(0.01)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = {s.name: s for s in timing.totals()}
    assert [s.name for s in timing.totals()] == ["rank", "smtp"]  # pipeline order
    assert got["rank"].count == 3 + 3 * 2
    assert got["smtp"].count == 15
    assert got["rank"].cpu >= 0.04 - 1e-3  # 10 ms here and 10 ms in each thread
    assert got["smtp"].cpu >= 0.03 - 1e-3
    assert got["smtp"].wall >= got["smtp"].cpu * 0.5
    timing.reset()
    assert timing.totals() == []
    assert timing.summary_line() == "nothing timed"
    with timed("load"):
        pass
    assert [s.name for s in timing.totals()] == ["load"]  # this thread's table still counts
    timing.reset()
