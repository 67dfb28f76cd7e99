"""Where a run's time goes: cheap per-stage accumulators of wall-clock and CPU time.

The pipeline wraps each stage in ``timed(name)``: loading subscriber files, planning who
is due, preparing an edition (indexing, embedding, compiling cards), ranking, rendering,
building MIME messages, claiming rows in the delivery log, SMTP, and recording outcomes.
Each use costs about a microsecond. CPU time is the calling thread's (``thread_time``), so
on one core the stages' CPU times add up to the run's, even with several SMTP threads;
their wall-clock times overlap when threads do. ``digest run -v`` logs the totals and
``bench/send_throughput.py`` prints them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

_lock = threading.Lock()
# Each thread adds to its own table (no lock on the hot path: the SMTP threads and the
# thread building messages would otherwise take turns on one); ``totals`` sums them.
_tables: list[tuple[threading.Thread, dict[str, list[float]]]] = []  # name -> [wall, cpu, count]
_local = threading.local()

ORDER = ("load", "plan", "prepare", "rank", "render", "mime", "claim", "smtp", "log")


@dataclass(frozen=True)
class Stage:
    name: str
    wall: float  # seconds, summed over every thread that ran the stage
    cpu: float  # seconds of CPU, summed likewise
    count: int  # how many times the stage was entered


class timed:  # lower case: used like a function, ``with timed("rank"):``
    """Adds the time spent inside ``with`` to stage ``name``."""

    __slots__ = ("count", "cpu", "name", "wall")

    def __init__(self, name: str, count: int = 1) -> None:
        self.name = name
        self.count = count
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> timed:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        add(
            self.name,
            time.perf_counter() - self.wall,
            time.thread_time() - self.cpu,
            self.count,
        )


def add(name: str, wall: float, cpu: float, count: int = 1) -> None:
    try:
        table: dict[str, list[float]] = _local.table
    except AttributeError:
        table = _local.table = {}
        with _lock:
            _tables.append((threading.current_thread(), table))
    row = table.get(name)
    if row is None:
        table[name] = [wall, cpu, float(count)]
    else:
        row[0] += wall
        row[1] += cpu
        row[2] += count


def totals() -> list[Stage]:
    """The stages seen since the last ``reset``, in pipeline order (a thread still
    running may add to them while they are read: read them when the run is over)."""
    rows: dict[str, list[float]] = {}
    with _lock:
        for _, table in _tables:
            for name, (wall, cpu, count) in list(table.items()):
                row = rows.setdefault(name, [0.0, 0.0, 0.0])
                row[0] += wall
                row[1] += cpu
                row[2] += count
    names = [n for n in ORDER if n in rows] + sorted(set(rows) - set(ORDER))
    return [Stage(n, rows[n][0], rows[n][1], int(rows[n][2])) for n in names]


def reset() -> None:
    with _lock:
        _tables[:] = [(t, table) for t, table in _tables if t.is_alive()]  # a thread per run
        for _, table in _tables:
            table.clear()


def summary_line() -> str:
    """``load 0.41 s, rank 2.10 s, ...`` (CPU seconds per stage) for the log."""
    return ", ".join(f"{s.name} {s.cpu:.2f} s" for s in totals()) or "nothing timed"
