"""A list that keeps a sample and counts everything: run summaries over 100,000 subscribers.

A run's summary lists who was sent, skipped, deferred or failed. Kept in full, those lists
grow with the subscriber list; a ``Tally`` keeps the first ``SAMPLE`` items (enough to
show and to log) and counts all of them in ``total``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, SupportsIndex, TypeVar

T = TypeVar("T")

SAMPLE = 1000


class Tally(list[T]):
    """The first ``cap`` items added, and in ``total`` how many were added in all.

    It compares, iterates and prints as the list of kept items; ``len`` is how many are
    kept, ``total`` how many were added and ``more`` how many were left out.
    """

    __slots__ = ("cap", "total")

    def __init__(self, items: Iterable[T] = (), cap: int = SAMPLE) -> None:
        super().__init__()
        self.cap = cap
        self.total = 0
        self.extend(items)

    def append(self, item: T) -> None:
        self.total += 1
        if len(self) < self.cap:
            super().append(item)

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def insert(self, index: SupportsIndex, item: T) -> None:
        raise TypeError("a Tally only grows at the end: use append")

    @property
    def more(self) -> int:
        """Items counted but not kept."""
        return self.total - len(self)

    def __iadd__(self, items: Iterable[T]) -> Tally[T]:  # type: ignore[override,misc]
        self.extend(items)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (list(self), self.cap, self.total))


def _rebuild(items: list[T], cap: int, total: int) -> Tally[T]:
    out: Tally[T] = Tally(items, cap)
    out.total = total
    return out
