"""Due claims: the runs sharing an edition divide its due subscribers between them, a batch
at a time, through the database (``due_claim``; no coordinator, no broker). And the relay's
pace (``relay_pace``): its per-second rate, shared by every run sending through it.

A run takes the subscribers of a batch that no run holds: a new row each (an INSERT that
does nothing where another run made the row), and, on PostgreSQL, the rows whose run is
gone or whose claim lapsed with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two runs taking
the same batch at the same moment never wait for each other. SQLite runs each claim as
one serialized transaction. A run ranks, renders and sends only what it took; what a run
that died had taken is taken by another once its owner is known to be gone (same machine)
or its claim has lapsed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, text

from ._base import Base, chunks, utc
from ._schema import DueClaimRow, RelayPaceRow

_TABLE: Any = DueClaimRow.__table__  # type: ignore[attr-defined]
_PACE: Any = RelayPaceRow.__table__  # type: ignore[attr-defined]

# PostgreSQL (``_claim_due_arrays``): new rows in the order given; the rows of other runs
# that may be free, and of those the ones no other run is taking right now.
_INSERT_ALL = text(
    "INSERT INTO due_claim (edition, email, owner, until) "
    "SELECT :d, v.e, :o, :u FROM unnest(CAST(:emails AS text[])) WITH ORDINALITY AS v(e, i) "
    "ORDER BY v.i ON CONFLICT DO NOTHING RETURNING email"
)
_OWNERS = text(
    "SELECT DISTINCT owner FROM due_claim "
    "WHERE edition = :d AND email = ANY(CAST(:emails AS text[])) AND owner <> :o"
)
_FREE = "(until < :at OR owner = ANY(CAST(:dead AS text[])))"
_TAKE = (
    "UPDATE due_claim SET owner = :o, until = :u WHERE edition = :d AND email IN ("
    "SELECT email FROM due_claim WHERE edition = :d AND email = ANY(CAST(:emails AS text[])) "
    "AND {} FOR UPDATE SKIP LOCKED) RETURNING email"
)
_TAKE_AGAIN = text(_TAKE.format(f"(owner = :o OR {_FREE})"))
_TAKE_LEFT = text(_TAKE.format(f"owner <> :o AND {_FREE}"))
# PostgreSQL (``reserve_slots``): the relay's next free slot moved ``span`` seconds on from
# now or from where it was, whichever is later, in one statement; returns where it is now.
_BOOK = text(
    "INSERT INTO relay_pace (relay, next_at) "
    "VALUES (:relay, CAST(:at AS timestamptz) + make_interval(secs => :span)) "
    "ON CONFLICT (relay) DO UPDATE SET next_at = GREATEST(relay_pace.next_at, "
    "CAST(:at AS timestamptz)) + make_interval(secs => :span) RETURNING next_at"
)


class DueClaims(Base):
    def claim_due(
        self,
        edition: date,
        emails: Sequence[str],
        owner: str,
        now: datetime,
        until: datetime,
        *,
        gone: Callable[[str], bool] = lambda _owner: False,
        again: bool = True,
    ) -> set[str]:
        """The addresses of ``emails`` this run (``owner``) now holds for ``edition``, until
        ``until``: those no run held, those of a run that ``gone`` says has ended or whose
        claim lapsed before ``now``, and (``again``) those it held already."""
        t = _TABLE
        at, lease = utc(now), utc(until)
        wanted = list(dict.fromkeys(emails))
        if self.engine.dialect.name == "postgresql":
            return self._claim_due_arrays(edition, wanted, owner, at, lease, gone, again)
        won: set[str] = set()
        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{self.engine.dialect.name}")
        insert = (
            dialect.insert(t)
            .values(edition=bindparam("d"), email=bindparam("e"), owner=owner, until=lease)
            .on_conflict_do_nothing()
            .returning(t.c.email)
        )
        if again:  # a second pass over the same batch: no new row to make
            with self.engine.begin() as conn:
                for part in chunks(wanted, 500):
                    rows = [{"d": edition, "e": e} for e in part]
                    won.update(r for (r,) in conn.execute(insert, rows))
        rest = [e for e in wanted if e not in won]
        if not rest:
            return won
        # Rows already there: this run's own (``again``), or another's that may be free.
        with self.engine.begin() as conn:
            for part in chunks(rest, 500):
                owners = conn.execute(
                    select(t.c.owner)
                    .distinct()
                    .where(t.c.edition == edition, t.c.email.in_(part), t.c.owner != owner)
                ).scalars()
                dead = sorted(o for o in owners if gone(o))
                free_of_others = (t.c.until < at) | t.c.owner.in_(dead)
                takeable = (
                    t.c.edition == edition,
                    t.c.email.in_(part),
                    (t.c.owner == owner) | free_of_others
                    if again
                    else (t.c.owner != owner) & free_of_others,
                )
                # Rows another run is taking right now are skipped, not waited for
                # (PostgreSQL; SQLite has one writer at a time and no row locks).
                free = select(t.c.email).where(*takeable).with_for_update(skip_locked=True)
                taken = conn.execute(
                    t.update()
                    .where(t.c.edition == edition, t.c.email.in_(free))
                    .values(owner=owner, until=lease)
                    .returning(t.c.email)
                )
                won.update(e for (e,) in taken)
        return won

    def _claim_due_arrays(
        self,
        edition: date,
        wanted: list[str],
        owner: str,
        at: datetime | None,
        lease: datetime | None,
        gone: Callable[[str], bool],
        again: bool,
    ) -> set[str]:
        """``claim_due`` on PostgreSQL: the same statements, with the addresses as one
        array each (not a placeholder per address) and in one transaction."""
        values: dict[str, Any] = {"d": edition, "o": owner, "at": at, "u": lease}
        won: set[str] = set()
        with self.engine.begin() as conn:
            if again:
                values["emails"] = wanted
                won.update(conn.execute(_INSERT_ALL, values).scalars())
            rest = [e for e in wanted if e not in won]
            if not rest:
                return won
            values["emails"] = rest
            owners = conn.execute(_OWNERS, values).scalars()
            values["dead"] = sorted(o for o in owners if gone(o))
            take = _TAKE_AGAIN if again else _TAKE_LEFT
            won.update(conn.execute(take, values).scalars())
        return won

    def reserve_slots(self, relay: str, now: datetime, count: int, interval: float) -> datetime:
        """Reserve ``count`` sending slots ``interval`` seconds apart on ``relay``, after
        those every run reserved before; returns when the first one is (``now`` at the
        earliest). One transaction, the relay's row locked (PostgreSQL: the row; SQLite:
        the database) for the time of one read and one write."""
        t = _PACE
        at = utc(now)
        assert at is not None
        if self.engine.dialect.name == "postgresql":  # one statement: the row locked by it
            with self.engine.begin() as conn:
                after = conn.execute(
                    _BOOK, {"relay": relay, "at": at, "span": count * interval}
                ).scalar_one()
            return (utc(after) or at) - timedelta(seconds=count * interval)
        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{self.engine.dialect.name}")
        with self.engine.begin() as conn:
            conn.execute(dialect.insert(t).values(relay=relay, next_at=at).on_conflict_do_nothing())
            # Writing first takes SQLite's write lock before the read, as FOR UPDATE does
            # the row's on PostgreSQL: two runs never read the same slot.
            conn.execute(t.update().where(t.c.relay == relay).values(next_at=t.c.next_at))
            row = conn.execute(
                select(t.c.next_at).where(t.c.relay == relay).with_for_update()
            ).scalar_one()
            first = max(utc(row) or at, at)
            conn.execute(
                t.update()
                .where(t.c.relay == relay)
                .values(next_at=first + timedelta(seconds=count * interval))
            )
        return first
