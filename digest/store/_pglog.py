"""The delivery log's statements on PostgreSQL straight through psycopg: each call of the
send path is one transaction in one round trip to the server.

Through SQLAlchemy, a transaction of the send path costs a round trip for its BEGIN, one
for each statement (``executemany`` sends a row each), one for its COMMIT, and the
client's work per row. Here the rows of a statement go as arrays (``unnest``: one
statement whatever their number; sent in binary, so no value is quoted) and a transaction
goes in psycopg's pipeline mode: BEGIN, the statements and COMMIT are sent together, with
one sync, and their results come back together. The connection is in autocommit mode
while the writer holds it, so the only transactions are these explicit ones (psycopg
would otherwise send a BEGIN of its own, and wait for it). The statements are
``DeliveryWriter``'s, with the same conditions and the same order; what they mean is
said there.

Imported only for a PostgreSQL database: a SQLite run never loads psycopg.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import pq
from sqlalchemy.exc import DBAPIError


class Claimed(NamedTuple):  # the same fields as ``_deliveries.Claimed``
    status: str
    attempts: int
    unknown: int
    reply: str


Key = tuple[str, date]

_LAPSED = (
    "(status = 'sending' AND (lease_until IS NULL OR lease_until < %(at)b "
    "OR claimed_by = ANY(%(dead)b::text[])))"
)
_GIVE_UP = (
    "UPDATE delivery SET status = 'failed', reply = %(gave_up)b, in_flight = false, "
    "unknown_outcomes = unknown_outcomes + 1, claimed_by = %(by)b, updated_at = %(at)b "
    f"WHERE edition = %(day)b AND email = ANY(%(emails)b::text[]) AND {_LAPSED} "
    "AND in_flight AND unknown_outcomes + 1 >= %(limit)b"
)
_TAKE = (
    "UPDATE delivery SET status = 'sending', message_id = v.m, claimed_by = %(by)b, "
    "lease_until = %(lease)b, in_flight = false, unknown_outcomes = unknown_outcomes + "
    "(CASE WHEN status = 'sending' AND in_flight THEN 1 ELSE 0 END), updated_at = %(at)b "
    "FROM unnest(%(emails)b::text[], %(mids)b::text[]) AS v(e, m) "
    "WHERE edition = %(day)b AND email = v.e AND unknown_outcomes < %(limit)b AND "
    f"(status IN ('pending', 'deferred', 'failed') OR {_LAPSED})"
)
# In the order of the arrays (sorted), as the rows of a claim are locked.
_INSERT = (
    "INSERT INTO delivery (email, edition, status, message_id, attempts, papers, reply, "
    "updated_at, claimed_by, lease_until, in_flight, unknown_outcomes) "
    "SELECT v.e, %(day)b, 'sending', v.m, 0, 0, '', %(at)b, %(by)b, %(lease)b, false, 0 "
    "FROM unnest(%(emails)b::text[], %(mids)b::text[]) WITH ORDINALITY AS v(e, m, i) "
    "ORDER BY v.i ON CONFLICT DO NOTHING"
)
_TAKEN = (
    "SELECT email, status, attempts, unknown_outcomes, reply FROM delivery "
    "WHERE edition = %(day)b AND email = ANY(%(emails)b::text[]) AND claimed_by = %(by)b"
)
_FINISH = (
    "UPDATE delivery AS t SET status = v.s, reply = v.r, papers = v.n, attempts = v.a, "
    "unknown_outcomes = v.u, in_flight = false, updated_at = %b "
    "FROM unnest(%b::text[], %b::date[], %b::text[], %b::text[], %b::text[], %b::int[], "
    "%b::int[], %b::int[]) AS v(e, d, b, s, r, n, a, u) "
    "WHERE t.email = v.e AND t.edition = v.d AND t.claimed_by = v.b"
)
_TRY = (
    "UPDATE delivery AS t SET attempts = v.a, unknown_outcomes = v.u, in_flight = true, "
    "lease_until = %b, updated_at = %b "
    "FROM unnest(%b::text[], %b::date[], %b::text[], %b::int[], %b::int[]) AS v(e, d, b, a, u) "
    "WHERE t.email = v.e AND t.edition = v.d AND t.claimed_by = v.b AND t.status = 'sending' "
    "RETURNING t.email, t.edition"
)
_PAPERS = (
    "INSERT INTO sent_paper (email, paper_id, edition) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::date[]) ON CONFLICT DO NOTHING"
)
_RENEW = (
    "UPDATE delivery AS t SET lease_until = %b "
    "FROM unnest(%b::text[], %b::date[], %b::text[]) AS v(e, d, b) "
    "WHERE t.email = v.e AND t.edition = v.d AND t.claimed_by = v.b AND t.status = 'sending'"
)
_HOLDERS = (
    "SELECT email, status, claimed_by, unknown_outcomes FROM delivery "
    "WHERE edition = %b AND email = ANY(%b::text[])"
)


class PgLog:
    """The send path's transactions on one psycopg connection (``DeliveryWriter`` holds
    it, and serializes the calls). Errors come out as SQLAlchemy's ``DBAPIError``, as
    they would through SQLAlchemy."""

    def __init__(self, raw: Any) -> None:
        self.raw: psycopg.Connection[Any] = raw
        with _errors():
            if raw.info.transaction_status != pq.TransactionStatus.IDLE:
                raw.rollback()  # a connection just checked out may be in one (its ping)
            raw.autocommit = True

    def close(self) -> None:
        """Give the connection back as it was lent (it goes back to the pool)."""
        with contextlib.suppress(psycopg.Error):
            if self.raw.info.transaction_status != pq.TransactionStatus.IDLE:
                self.raw.execute("ROLLBACK")
            self.raw.autocommit = False

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """BEGIN, what the block queues, COMMIT: one round trip; read the cursors' results
        after the block. Rolled back on any error."""
        raw = self.raw
        try:
            with _errors():
                with raw.pipeline():
                    raw.execute("BEGIN")
                    yield raw
                    done = raw.execute("COMMIT")
                if done.statusmessage != "COMMIT":  # an aborted transaction ends as ROLLBACK
                    raise psycopg.OperationalError(f"not committed: {done.statusmessage}")
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                if raw.info.transaction_status != pq.TransactionStatus.IDLE:
                    raw.execute("ROLLBACK")
            raise

    def holders(self, edition: date, emails: Sequence[str]) -> list[tuple[str, str, str, int]]:
        with _errors():
            return self.raw.execute(_HOLDERS, (edition, list(emails))).fetchall()

    def claim(
        self,
        by_edition: dict[date, list[tuple[str, str]]],
        by: str,
        now: datetime,
        until: datetime,
        dead: Collection[str],
        limit: int,
        gave_up: str,
    ) -> dict[Key, Claimed]:
        found: list[tuple[date, psycopg.Cursor[Any]]] = []
        with self._transaction() as raw:
            for edition in sorted(by_edition):
                rows = sorted(by_edition[edition])
                values = {
                    "day": edition,
                    "emails": [e for e, _ in rows],
                    "mids": [m for _, m in rows],
                    "by": by,
                    "at": now,
                    "lease": until,
                    "dead": sorted(dead),
                    "limit": limit,
                    "gave_up": gave_up[:1000],
                }
                raw.execute(_GIVE_UP, values)
                raw.execute(_TAKE, values)
                raw.execute(_INSERT, values)
                found.append((edition, raw.execute(_TAKEN, values)))
        with _errors():
            return {
                (e, edition): Claimed(st, a, u, r)
                for edition, cur in found
                for e, st, a, u, r in cur.fetchall()
            }

    def commit(
        self,
        finished: Sequence[tuple[str, date, str, str, str, Sequence[str], int, int]],
        tries: Sequence[tuple[str, date, str, int, int]],
        at: datetime | None,
        lease: datetime | None,
    ) -> tuple[int, set[Key]]:
        papers: tuple[list[str], list[str], list[date]] = ([], [], [])
        for e, d, _, st, _, p, _, _ in finished:
            if st == "sent":
                for pid in dict.fromkeys(p):
                    papers[0].append(e)
                    papers[1].append(pid)
                    papers[2].append(d)
        final = tried = None
        with self._transaction() as raw:
            if finished:
                cols = list(zip(*finished, strict=True))
                final = raw.execute(
                    _FINISH,
                    (
                        at,
                        list(cols[0]),
                        list(cols[1]),
                        list(cols[2]),
                        list(cols[3]),
                        [r[:1000] for r in cols[4]],
                        [len(p) for p in cols[5]],
                        list(cols[6]),
                        list(cols[7]),
                    ),
                )
            if tries:
                cols = list(zip(*tries, strict=True))
                tried = raw.execute(_TRY, (lease, at, *(list(c) for c in cols)))
            if papers[0]:
                raw.execute(_PAPERS, papers)
        with _errors():
            done = final.rowcount if final is not None else 0
            ok = set(tried.fetchall()) if tried is not None else set()
        return done, {(e, d) for e, d, _, _, _ in tries} - ok

    def renew(self, items: Sequence[tuple[str, date, str]], until: datetime | None) -> int:
        cols = list(zip(*items, strict=True))
        with _errors():
            return self.raw.execute(_RENEW, (until, *(list(c) for c in cols))).rowcount


@contextmanager
def _errors() -> Iterator[None]:
    """psycopg's errors as SQLAlchemy's (``DBAPIError`` and its kinds), which the send
    path puts in words, and whose deadlocks a claim retries."""
    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
