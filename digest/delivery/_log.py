"""The values a send run works with, and the delivery log's group commit.

The delivery log holds one row per (subscriber, edition) moving pending -> sending ->
sent / deferred / failed. ``DeliveryLog.record`` returns only once an outcome is
committed, so a connection never has more than one accepted-but-unrecorded message;
outcomes arriving from several connections at once share one transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.exc import SQLAlchemyError

from ..clock import Clock
from ..errors import DigestError, SendError
from ..models import Profile, Rendered
from ..store import Store
from ..tally import Tally
from ..timing import timed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One rendered digest on its way to one subscriber."""

    profile: Profile
    edition: date
    rendered: Rendered
    paper_ids: tuple[str, ...] = ()  # recorded as sent to this subscriber once sent


@dataclass
class DeliverySummary:
    """Who was sent what. Each list keeps a sample (the first ``tally.SAMPLE``) and counts
    everyone in its ``total``, so a run over 100,000 subscribers stays small."""

    sent: Tally[str] = field(default_factory=Tally)
    deferred: Tally[tuple[str, str]] = field(default_factory=Tally)  # (email, reason)
    failed: Tally[tuple[str, str]] = field(default_factory=Tally)  # (email, reason)
    already_sent: Tally[str] = field(default_factory=Tally)
    stopped: Tally[str] = field(default_factory=Tally)  # not attempted: asked to stop

    def __post_init__(self) -> None:
        for name in ("sent", "deferred", "failed", "already_sent", "stopped"):
            value = getattr(self, name)
            if not isinstance(value, Tally):
                setattr(self, name, Tally(value))

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deferred


@dataclass(eq=False)
class Job:
    """One message: built once, possibly sent several times (same bytes, same Message-ID)."""

    item: Outgoing
    message_id: str
    data: bytes
    rcpt: str = ""  # the address on the wire (IDNA domain)
    tries: int = 0
    last: str = ""

    @property
    def email(self) -> str:
        return self.item.profile.email


class DeliveryLog:
    """Batched access to the store's delivery rows, and group commit of outcomes.

    ``record`` returns only once the outcome is committed, so a connection never has more
    than one accepted-but-unrecorded message. Outcomes arriving from several connections
    at once are committed together in one transaction.
    """

    def __init__(self, store: Store, now: Clock) -> None:
        self.writer = store.delivery_writer()
        self.now = now
        self.summary = DeliverySummary()
        self._cond = threading.Condition()
        self._pending: list[tuple[Job, str, str]] = []
        self._next = 0  # tickets handed out
        self._done = 0  # tickets committed
        self._committing = False
        self._error: BaseException | None = None

    def close(self) -> None:
        self.writer.close()

    def statuses(self, edition: date, emails: list[str]) -> dict[str, str]:
        with _database_errors():
            return self.writer.statuses(edition, emails)

    def claim(self, jobs: list[Job]) -> None:
        with _database_errors():
            self.writer.claim([(j.email, j.item.edition, j.message_id) for j in jobs], self.now())

    def record(self, job: Job, status: str, reply: str) -> None:
        self.record_many([(job, status, reply)])

    def record_many(self, outcomes: list[tuple[Job, str, str]]) -> None:
        """Commit these outcomes (with any others waiting); returns once they are."""
        if not outcomes:
            return
        with self._cond:
            self._pending.extend(outcomes)
            self._next += 1
            ticket = self._next
            while self._done < ticket:
                if self._error is not None:
                    raise SendError(f"delivery log: cannot record outcomes ({self._error})")
                if self._committing:
                    self._cond.wait()
                    continue
                batch, self._pending = self._pending, []
                upto = self._next
                self._committing = True
                self._cond.release()
                try:
                    with timed("log"):
                        self._write(batch)
                except BaseException as exc:
                    self._error = exc
                    raise
                finally:
                    self._cond.acquire()
                    self._committing = False
                    if self._error is None:
                        self._done = upto
                    self._cond.notify_all()

    def _write(self, batch: list[tuple[Job, str, str]]) -> None:
        with _database_errors():
            self.writer.finish(
                [
                    (j.email, j.item.edition, st, reply, j.item.paper_ids if st == "sent" else ())
                    for j, st, reply in batch
                ],
                self.now(),
            )
        s = self.summary
        for j, status, reply in batch:
            if status == "sent":
                s.sent.append(j.email)
            elif status == "failed":
                s.failed.append((j.email, reply))
            elif status == "pending":
                s.stopped.append(j.email)
            else:
                s.deferred.append((j.email, reply))
            log.log(
                logging.DEBUG if status == "sent" else logging.WARNING,
                "%s %s: %s%s",
                j.item.edition,
                j.email,
                status,
                f" ({reply})" if reply else "",
            )


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise SendError(
            f"delivery log: database error ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "the run stopped; fix the database and run again to send the rest"
        ) from exc


def defer(dlog: DeliveryLog, jobs: list[Job], reason: str) -> None:
    """Log ``jobs`` as deferred (for the next run) with ``reason``, or each one's last reply."""
    try:
        dlog.record_many([(job, "deferred", reason or job.last or "not sent") for job in jobs])
    except DigestError as exc:  # the database is gone; the rows stay "sending"
        log.error("%s", exc)
