"""Delivering one edition: the delivery log, the outbox and SMTP transports, retries.

The delivery log holds one row per (subscriber, edition) moving pending -> sending ->
sent / deferred / failed. A batch of messages is marked ``sending`` (with its Message-ID)
before any of them goes out; each message's final state is committed as soon as the
server answers, before the next message goes out on that connection. So after a crash at
most one message per connection was accepted by the server without being marked sent;
a rerun resends every ``sending`` row with the same Message-ID.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice

from sqlalchemy.exc import SQLAlchemyError

from .config import Config
from .errors import DigestError, SendError
from .mime import Composer, ascii_address, message_id, outbox_path
from .models import Profile, Rendered
from .smtp import Outcome, SmtpConnection, TemporaryServerError, tls_context
from .store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]
BATCH = 200  # messages claimed (marked "sending") per database transaction


@dataclass(frozen=True)
class Outgoing:
    """One rendered digest on its way to one subscriber."""

    profile: Profile
    edition: date
    rendered: Rendered
    paper_ids: tuple[str, ...] = ()  # recorded as sent to this subscriber once sent


@dataclass
class DeliverySummary:
    sent: list[str] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    already_sent: list[str] = field(default_factory=list)

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


# -- the delivery log ---------------------------------------------------------------------------


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
        with self._cond:
            self._pending.append((job, status, reply))
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


# -- rate limit ---------------------------------------------------------------------------------


class RateLimit:
    """Messages per second and per hour, shared by all connections."""

    def __init__(
        self, per_second: float, per_hour: int, sleep: Sleep, recent: Iterable[float] = ()
    ) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.per_hour = per_hour
        self.sleep = sleep
        self.lock = threading.Lock()
        self.next_at = 0.0
        self.logged_at = -60.0
        self.window: deque[float] = deque(sorted(recent))

    @property
    def active(self) -> bool:
        return bool(self.interval or self.per_hour)

    def wait(self) -> None:
        if not self.active:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            if self.per_hour:
                while self.window and self.window[0] <= at - 3600:
                    self.window.popleft()
                if len(self.window) >= self.per_hour:
                    at = max(at, self.window[0] + 3600)
                    if now >= self.logged_at + 60:
                        self.logged_at = now
                        log.info(
                            "[smtp] rate_per_hour = %d reached; next message in %.0f s",
                            self.per_hour,
                            at - now,
                        )
                self.window.append(at)
            self.next_at = at + self.interval
        if at > now:
            self.sleep(at - now)


# -- transports ---------------------------------------------------------------------------------


class Abort(Exception):
    """This job could not be attempted: the run is stopping (see ``SmtpPool.stop_reason``)."""


class SmtpPool:
    """``[smtp] connections`` worker threads, each with its own reused connection."""

    def __init__(self, cfg: Config, dlog: DeliveryLog, sleep: Sleep, rate: RateLimit) -> None:
        self.cfg = cfg
        self.dlog = dlog
        self.sleep = sleep
        self.rate = rate
        self.password = cfg.smtp_password()
        self.context = tls_context(cfg) if cfg.smtp.security != "none" else None
        self.sender = cfg.sender.address
        self.fatal: BaseException | None = None  # auth, TLS, database: raise at once
        self.unreachable = ""  # the server refused connections on every retry
        self._stop = threading.Event()

    def run(self, batches: Iterable[list[Job]]) -> tuple[list[Job], list[Job]]:
        """Send every job; returns (refused for now, never attempted). Stops feeding when
        the server is unreachable; raises the fatal error, if any, after the workers end.

        With one connection everything happens in the calling thread; with several, the
        calling thread builds messages and ``[smtp] connections`` threads send them."""
        retry: list[Job] = []
        left: list[Job] = []
        lock = threading.Lock()
        if self.cfg.smtp.connections == 1:
            self._inline(batches, retry, left, lock)
        else:
            self._threaded(batches, retry, left, lock)
        if self.fatal is not None:
            raise _Fatal(self.fatal, retry + left)
        return retry, left

    def _inline(
        self, batches: Iterable[list[Job]], retry: list[Job], left: list[Job], lock: threading.Lock
    ) -> None:
        conn = SmtpConnection(self.cfg, self.password, self.context)
        try:
            for batch in batches:
                for i, job in enumerate(batch):
                    if self._stop.is_set():
                        left.extend(batch[i:])
                        break
                    self._handle(conn, job, retry, left, lock)
                if self._stop.is_set():
                    break
        finally:
            conn.close()

    def _threaded(
        self, batches: Iterable[list[Job]], retry: list[Job], left: list[Job], lock: threading.Lock
    ) -> None:
        n = self.cfg.smtp.connections
        q: queue.Queue[Job | None] = queue.Queue(maxsize=2 * n)
        threads = [
            threading.Thread(
                target=self._worker, args=(q, retry, left, lock), name=f"smtp-{i}", daemon=True
            )
            for i in range(n)
        ]
        for t in threads:
            t.start()
        try:
            for batch in batches:
                for i, job in enumerate(batch):
                    if self._stop.is_set():
                        left.extend(batch[i:])
                        break
                    q.put(job)  # workers keep taking jobs until they get None
                if self._stop.is_set():
                    break
        finally:
            for _ in threads:
                q.put(None)
            for t in threads:
                t.join()

    def _worker(
        self, q: queue.Queue[Job | None], retry: list[Job], left: list[Job], lock: threading.Lock
    ) -> None:
        conn = SmtpConnection(self.cfg, self.password, self.context)
        try:
            while (job := q.get()) is not None:
                if self._stop.is_set():
                    with lock:
                        left.append(job)
                    continue
                self._handle(conn, job, retry, left, lock)
        finally:
            conn.close()

    def _handle(
        self,
        conn: SmtpConnection,
        job: Job,
        retry: list[Job],
        left: list[Job],
        lock: threading.Lock,
    ) -> None:
        """Send one job and log its outcome; a 4xx or lost connection goes to ``retry``."""
        try:
            outcome = self._send(conn, job)
            if outcome.status in ("temporary", "dropped"):
                job.last = outcome.reply
                with lock:
                    retry.append(job)
            else:
                status = "sent" if outcome.status == "sent" else "failed"
                self.dlog.record(job, status, outcome.reply)
        except Abort:
            with lock:
                left.append(job)
        except BaseException as exc:  # the database failed (or a bug): stop everything
            with lock:
                left.append(job)
                self.fatal = self.fatal or exc
            self._stop.set()

    def _send(self, conn: SmtpConnection, job: Job) -> Outcome:
        """One message, reconnecting after a dropped connection (same bytes each time)."""
        backoff = self.cfg.smtp.retry_backoff
        failures = 0
        while True:
            if conn.smtp is not None and conn.sent >= self.cfg.smtp.max_per_connection:
                conn.close()
            if conn.smtp is None:
                try:
                    conn.open()
                except TemporaryServerError as exc:
                    failures += 1
                    if failures > self.cfg.smtp.retries or self._stop.is_set():
                        self.unreachable = self.unreachable or str(exc)
                        self._stop.set()
                        raise Abort(str(exc)) from exc
                    delay = backoff * 2 ** (failures - 1)
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    self.sleep(delay)
                    continue
                except SendError as exc:  # AuthError, TLS problems: stop the run now
                    self.fatal = self.fatal or exc
                    self._stop.set()
                    raise Abort(str(exc)) from exc
            self.rate.wait()
            job.tries += 1
            outcome = conn.send(self.sender, job.rcpt, job.data)
            if outcome.status != "dropped":
                return outcome
            failures += 1
            log.warning("%s: %s; reconnecting", job.email, outcome.reply)
            if failures > self.cfg.smtp.retries:
                return outcome


class _Fatal(Exception):
    def __init__(self, error: BaseException, unfinished: list[Job]) -> None:
        super().__init__(str(error))
        self.error = error
        self.unfinished = unfinished


class Outbox:
    """Writes each message to ``<outbox>/<edition>/<slug>.eml`` (used when no SMTP host)."""

    def __init__(self, cfg: Config, dlog: DeliveryLog) -> None:
        self.cfg = cfg
        self.dlog = dlog

    def run(self, jobs: Iterator[list[Job]]) -> tuple[list[Job], list[Job]]:
        for batch in jobs:
            for i, job in enumerate(batch):
                path = outbox_path(self.cfg, job.item.profile, job.item.edition)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.tmp")
                    tmp.write_bytes(job.data)
                    os.replace(tmp, path)
                except OSError as exc:
                    error = SendError(
                        f"{path}: cannot write to the outbox ({exc.strerror}); check `outbox` "
                        "in the config and the folder's permissions"
                    )
                    _defer(self.dlog, batch[i:], str(error))
                    raise error from exc
                self.dlog.record(job, "sent", f"written to {path}")
        return [], []


# -- the run ------------------------------------------------------------------------------------


def _chunks(items: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class _Feeder:
    """Turns the outgoing stream into claimed jobs, skipping what was already sent."""

    def __init__(self, cfg: Config, dlog: DeliveryLog, now: Clock) -> None:
        self.composer = Composer(cfg)
        self.dlog = dlog
        self.now = now
        self.seen: set[tuple[str, date]] = set()

    def jobs(self, outgoing: Iterable[Outgoing]) -> Iterator[list[Job]]:
        for chunk in _chunks(outgoing, BATCH):
            jobs: list[Job] = []
            for edition, items in _by_edition(chunk).items():
                status = self.dlog.statuses(edition, [o.profile.email for o in items])
                for item in items:
                    job = self._job(item, status.get(item.profile.email))
                    if job is not None:
                        jobs.append(job)
            if jobs:
                self.dlog.claim(jobs)
                yield jobs

    def _job(self, item: Outgoing, status: str | None) -> Job | None:
        email = item.profile.email
        key = (email.lower(), item.edition)
        if key in self.seen:
            log.warning("%s: listed twice for edition %s; sending once", email, item.edition)
            return None
        self.seen.add(key)
        if status == "sent":
            self.dlog.summary.already_sent.append(email)
            return None
        mid = message_id(email, item.edition, self.composer.domain)
        try:
            rcpt = ascii_address(email)
            data = self.composer.build(item.profile, item.edition, item.rendered, now=self.now())
        except SendError as exc:
            job = Job(item, mid, b"")
            self.dlog.claim([job])
            self.dlog.record(job, "failed", str(exc))
            return None
        return Job(item, mid, data, rcpt)

    def defer_rest(self, stream: Iterator[Outgoing], reason: str) -> None:
        """Log the rest of the stream as deferred, without building the messages."""
        for chunk in _chunks(stream, BATCH):
            jobs: list[Job] = []
            for edition, items in _by_edition(chunk).items():
                status = self.dlog.statuses(edition, [o.profile.email for o in items])
                for item in items:
                    key = (item.profile.email.lower(), item.edition)
                    if key in self.seen:
                        continue
                    self.seen.add(key)
                    if status.get(item.profile.email) == "sent":
                        self.dlog.summary.already_sent.append(item.profile.email)
                        continue
                    mid = message_id(item.profile.email, item.edition, self.composer.domain)
                    jobs.append(Job(item, mid, b""))
            self.dlog.claim(jobs)
            _defer(self.dlog, jobs, reason)


def _by_edition(chunk: list[Outgoing]) -> dict[date, list[Outgoing]]:
    out: dict[date, list[Outgoing]] = {}
    for item in chunk:
        out.setdefault(item.edition, []).append(item)
    return out


def deliver(
    cfg: Config,
    store: Store,
    outgoing: Iterable[Outgoing],
    *,
    now: Clock,
    sleep: Sleep = time.sleep,
) -> DeliverySummary:
    """Send each outgoing digest once per (subscriber, edition); see the module docstring.

    ``outgoing`` is consumed as messages go out (it may be a generator over many
    subscribers). An authentication or TLS failure raises at once (AuthError/SendError):
    the messages of this run not yet sent are left ``deferred`` and none is marked sent.
    """
    dlog = DeliveryLog(store, now)
    try:
        feeder = _Feeder(cfg, dlog, now)
        stream = iter(outgoing)
        if cfg.smtp.host:
            _send_smtp(cfg, store, dlog, feeder, stream, now, sleep)
        else:
            Outbox(cfg, dlog).run(feeder.jobs(stream))
        return dlog.summary
    finally:
        dlog.close()


def _send_smtp(
    cfg: Config,
    store: Store,
    dlog: DeliveryLog,
    feeder: _Feeder,
    stream: Iterator[Outgoing],
    now: Clock,
    sleep: Sleep,
) -> None:
    recent = _recent(store, now) if cfg.smtp.rate_per_hour else ()
    rate = RateLimit(cfg.smtp.rate_per_second, cfg.smtp.rate_per_hour, sleep, recent)
    pool = SmtpPool(cfg, dlog, sleep, rate)
    try:
        retry, left = pool.run(feeder.jobs(stream))
        for attempt in range(1, cfg.smtp.retries + 1):
            if not retry or pool.unreachable:
                break
            delay = cfg.smtp.retry_backoff * 2 ** (attempt - 1)
            log.info(
                "%d message(s) refused for now; retry %d of %d in %.1f s",
                len(retry),
                attempt,
                cfg.smtp.retries,
                delay,
            )
            sleep(delay)
            retry, more = pool.run([retry])
            left.extend(more)
    except _Fatal as exc:
        _defer(dlog, exc.unfinished, f"not sent: {exc.error}")
        raise exc.error from None
    _defer(dlog, retry, "")
    if pool.unreachable:
        reason = f"server unavailable: {pool.unreachable}"
        _defer(dlog, left, reason)
        feeder.defer_rest(stream, reason)
    else:
        _defer(dlog, left, "not sent")


def _defer(dlog: DeliveryLog, jobs: list[Job], reason: str) -> None:
    for job in jobs:
        try:
            dlog.record(job, "deferred", reason or job.last or "not sent")
        except DigestError as exc:  # the database is gone; the rows stay "sending"
            log.error("%s", exc)
            return


def _recent(store: Store, now: Clock) -> list[float]:
    """Monotonic times of the messages sent in the last hour (by any run)."""
    current = now()
    mono = time.monotonic()
    times = store.sent_since(current - timedelta(hours=1))
    return [mono - (current - t).total_seconds() for t in times]
