"""The values a send run works with, and the delivery log: claims and group commit.

The delivery log holds one row per (subscriber, edition) moving pending -> sending ->
sent / deferred / failed. A run sends only what it claimed (``DeliveryLog.claim``: taken
in the database, so no other run, here or on another machine, sends it too), logs each try
before it starts, and ``DeliveryLog.record`` returns only once an outcome is committed, so
a connection never has more than one accepted-but-unrecorded message; outcomes and tries
arriving from several connections at once share one transaction, and a transaction waits a
moment for the outcomes of messages being sent right now when that is shorter than a
commit (see ``DeliveryLog.record_many``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.exc import SQLAlchemyError

from ..clock import Clock
from ..errors import IN_SUMMARY, DigestError, SendError
from ..models import Profile, Rendered
from ..store import Holder, Store
from ..tally import Tally
from ..timing import timed
from ._claims import LEASE, RENEW_EVERY, UNKNOWN_LIMIT, Claimant, gone

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
    elsewhere: Tally[str] = field(default_factory=Tally)  # another run is sending it
    given_up: Tally[str] = field(default_factory=Tally)  # failed before: outcome unknown

    def __post_init__(self) -> None:
        for name in (
            "sent",
            "deferred",
            "failed",
            "already_sent",
            "stopped",
            "elsewhere",
            "given_up",
        ):
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
    tries: int = 0  # tries in this run
    last: str = ""
    claim: str = ""  # the claim this run holds it by
    logged: int = 0  # tries logged before this run claimed it
    unknown: int = 0  # tries whose outcome is unknown, this run's included
    ready: bool = False  # a try is logged and has not started yet
    lost: bool = False  # another run took it over: this one must not send it
    sending: float = 0.0  # when its send started (``DeliveryLog.sending``), until its outcome

    @property
    def email(self) -> str:
        return self.item.profile.email

    @property
    def attempts(self) -> int:
        return self.logged + self.tries


class DeliveryLog:
    """The run's access to the store's delivery rows: claims, tries, group commit.

    ``claim`` takes the messages this run may send. ``record`` returns only once the
    outcome is committed, so a connection never has more than one accepted-but-unrecorded
    message; ``tried`` logs a try before it starts (so a try a crash cuts short is known
    for one whose outcome is unknown) and says whether the claim still holds. Outcomes and
    tries arriving from several connections at once are committed in one transaction. A
    thread renews the run's claims while it holds any.
    """

    def __init__(self, store: Store, now: Clock) -> None:
        self.writer = store.delivery_writer()
        self.now = now
        self.summary = DeliverySummary()
        self.claimant = Claimant()
        self.dead: set[str] = set()  # claims of runs that have certainly ended
        self._held: dict[int, Job] = {}  # claimed and not finished, by id()
        self._held_lock = threading.Lock()
        self._closing = threading.Event()
        self._renewer: threading.Thread | None = None
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        # Messages being sent right now (``sending``), until their outcome is queued;
        # ``_arrived`` tells a commit gathering outcomes that one came (or a send ended
        # without one). Average send and commit times decide how long a commit waits.
        self._sending = 0
        self._arrived = threading.Condition(lock)
        self._send_time = 0.0
        self._commit_time = 0.0
        self._pending: list[tuple[Job, str, str]] = []
        self._tries: list[Job] = []
        self._next = 0  # tickets handed out
        self._done = 0  # tickets committed
        self._committing = False
        self._error: BaseException | None = None

    def close(self) -> None:
        self._closing.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            self.writer.close()
        finally:
            self.claimant.close()

    def holders(self, edition: date, emails: list[str]) -> dict[str, Holder]:
        """The logged rows of ``emails`` for ``edition``; claims on them by runs that
        have ended are noted, for ``claim`` to take back."""
        with _database_errors():
            held = self.writer.holders(edition, emails)
        checked: dict[str, bool] = {}
        for h in held.values():
            by = h.claimed_by
            if h.status == "sending" and by and by not in self.dead:
                if by not in checked:
                    checked[by] = gone(by)
                if checked[by]:
                    self.dead.add(by)
        return held

    def claim(self, jobs: list[Job]) -> list[Job]:
        """The jobs this run now holds, of ``jobs``; the others are in the summary: sent
        already, being sent by another run, or given up (too many outcomes unknown)."""
        if not jobs:
            return []
        token = self.claimant.token()
        now = self.now()
        with _database_errors():
            taken = self.writer.claim(
                [(j.email, j.item.edition, j.message_id) for j in jobs],
                token,
                now,
                now + LEASE,
                dead=self.dead,
                limit=UNKNOWN_LIMIT,
                gave_up=GAVE_UP,
            )
        won: list[Job] = []
        lost: list[Job] = []
        for job in jobs:
            got = taken.get((job.email, job.item.edition))
            if got is None:
                lost.append(job)
                continue
            job.claim, job.logged, job.unknown = token, got.attempts, got.unknown
            if got.status == "sending":
                won.append(job)
            else:  # given up now: its last try's run died, and too many were unknown
                with self._cond:
                    self._note(job, got.status, got.reply)
        if won:
            with self._held_lock:
                self._held.update((id(j), j) for j in won)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="delivery-lease", daemon=True
                )
                self._renewer.start()
        if lost:
            self._not_ours(lost)
        return won

    def _not_ours(self, jobs: list[Job]) -> None:
        """Say why each of ``jobs`` could not be claimed."""
        by_edition: dict[date, list[Job]] = {}
        for job in jobs:
            by_edition.setdefault(job.item.edition, []).append(job)
        for edition, group in by_edition.items():
            held = self.holders(edition, [j.email for j in group])
            with self._cond:
                for job in group:
                    h = held.get(job.email)
                    if h is not None and h.status == "sent":
                        self.summary.already_sent.append(job.email)
                    elif h is not None and h.unknown >= UNKNOWN_LIMIT:
                        self.given_up(job)
                    else:
                        self.summary.elsewhere.append(job.email)
                        log.debug("%s %s: being sent by another run", edition, job.email)

    def given_up(self, job: Job) -> None:
        """``job`` failed in an earlier run with its outcome unknown too often: not sent."""
        self.summary.given_up.append(job.email)
        log.debug(
            "%s %s: not sent again: an earlier run gave up on it (outcome unknown)",
            job.item.edition,
            job.email,
        )

    def taken_over(self, job: Job) -> None:
        """Another run took ``job`` over (this run's claim lapsed): it is theirs now."""
        with self._held_lock:
            self._held.pop(id(job), None)
        with self._cond:
            self.summary.elsewhere.append(job.email)
        log.warning(
            "%s %s: another run took this message over (this run's claim lapsed); not sent "
            "by this run",
            job.item.edition,
            job.email,
        )

    def _renew(self) -> None:
        """Renew the run's claims every ``RENEW_EVERY`` seconds until ``close``."""
        while not self._closing.wait(RENEW_EVERY):
            with self._held_lock:
                held = [(j.email, j.item.edition, j.claim) for j in self._held.values()]
            if not held:
                continue
            try:
                self.writer.renew(held, self.now() + LEASE)
            except Exception as exc:  # the next renewal, or the next commit, says more
                log.warning("delivery log: cannot renew this run's claims (%s)", exc)

    def sending(self, job: Job) -> None:
        """``job`` goes to the server now; its outcome follows (``record``), or ``sent``
        says there is none to wait for."""
        with self._cond:
            if not job.sending:
                job.sending = time.monotonic()
                self._sending += 1

    def sent(self, job: Job) -> None:
        """``job``'s send is over without an outcome to record (retried later, abandoned)."""
        with self._cond:
            self._unsend(job)

    def _unsend(self, job: Job) -> None:
        """(Holding ``_cond``.) ``job`` is no longer being sent: its outcome is queued, or
        there is none; its send time counts in the average."""
        if job.sending:
            took = time.monotonic() - job.sending
            self._send_time = took if not self._send_time else 0.8 * self._send_time + 0.2 * took
            job.sending = 0.0
            self._sending -= 1
            self._arrived.notify()

    def _gather(self) -> None:
        """(Holding ``_cond``, about to commit.) Wait a moment for the outcomes of the
        messages being sent right now, so that they share this commit rather than wait
        for the whole of the next one: when sends are shorter than commits (a fast relay,
        and a database whose commits wait for its disk, such as PostgreSQL's), every
        connection's outcome goes in one commit instead of half of them in turn. The wait
        is at most twice the average send and never longer than a commit; with sends as
        long as commits or longer it is none."""
        send, commit = self._send_time, self._commit_time
        if not self._sending or not send or send >= commit:
            return
        deadline = time.monotonic() + min(2 * send, commit)
        while self._sending and self._error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.wait(left)

    def tried(self, job: Job) -> bool:
        """Log that a try of ``job`` starts now; False when the claim was taken over
        (then the job must not be sent)."""
        self.record_many([], [job])
        return not job.lost

    def record(self, job: Job, status: str, reply: str, then: Job | None = None) -> None:
        """Commit ``job``'s outcome; with ``then``, log a try of that job (the next on the
        connection) in the same transaction."""
        self.record_many([(job, status, reply)], [then] if then is not None else [])

    def record_many(self, outcomes: list[tuple[Job, str, str]], tries: Sequence[Job] = ()) -> None:
        """Commit these outcomes and tries (with any others waiting); returns once they are."""
        if not outcomes and not tries:
            return
        with self._cond:
            self._pending.extend(outcomes)
            self._tries.extend(tries)
            for job, _, _ in outcomes:
                self._unsend(job)
            self._next += 1
            ticket = self._next
            while self._done < ticket:
                if self._error is not None:
                    raise SendError(f"delivery log: cannot record outcomes ({self._error})")
                if self._committing:
                    self._cond.wait()
                    continue
                self._committing = True  # this thread commits: others queue theirs
                self._gather()
                batch, self._pending = self._pending, []
                tried, self._tries = self._tries, []
                upto = self._next
                self._cond.release()
                started = time.monotonic()
                try:
                    with timed("log"):
                        self._write(batch, tried)
                except BaseException as exc:
                    self._error = exc
                    raise
                finally:
                    self._cond.acquire()
                    took = time.monotonic() - started
                    self._commit_time = (
                        0.8 * self._commit_time + 0.2 * took if self._commit_time else took
                    )
                    self._committing = False
                    if self._error is None:
                        self._done = upto
                        for job, status, reply in batch:
                            self._note(job, status, reply)
                    self._cond.notify_all()

    def _write(self, batch: list[tuple[Job, str, str]], tried: list[Job]) -> None:
        now = self.now()
        with _database_errors():
            done, refused = self.writer.commit(
                [
                    (
                        j.email,
                        j.item.edition,
                        j.claim,
                        st,
                        reply,
                        j.item.paper_ids if st == "sent" else (),
                        j.attempts,
                        j.unknown,
                    )
                    for j, st, reply in batch
                ],
                [(j.email, j.item.edition, j.claim, j.attempts + 1, j.unknown) for j in tried],
                now,
                now + LEASE,
            )
        for job in tried:
            if (job.email, job.item.edition) in refused:
                job.lost = True
            else:
                job.ready = True
        if batch:
            with self._held_lock:
                for job, _, _ in batch:
                    self._held.pop(id(job), None)
        if done < len(batch):
            log.warning(
                "delivery log: %d outcome(s) not written: another run took those messages "
                "over after this run's claim lapsed",
                len(batch) - done,
            )

    def _note(self, j: Job, status: str, reply: str) -> None:
        """Count an outcome in the summary and log it (holding ``_cond``)."""
        s = self.summary
        if status == "sent":
            s.sent.append(j.email)
        elif status == "failed":
            s.failed.append((j.email, reply))
        elif status == "pending":
            s.stopped.append(j.email)
        else:
            s.deferred.append((j.email, reply))
        # Sent, and left pending by a stop (the run says how many), are not problems; a
        # failure is in the run's report too (the command line shows it there, once).
        problem = status in ("failed", "deferred")
        log.log(
            logging.WARNING if problem else logging.DEBUG,
            "%s %s: %s%s",
            j.item.edition,
            j.email,
            status,
            f" ({reply})" if reply else "",
            extra=IN_SUMMARY if problem else None,
        )


# The reply of a message given up because too many of its tries have an unknown outcome.
GAVE_UP = (
    f"outcome unknown: {UNKNOWN_LIMIT} tries ended before the server confirmed the message "
    "(connection lost after the data, or the run stopped); not sent again, as it may have "
    "arrived (every copy has the same Message-ID)"
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
