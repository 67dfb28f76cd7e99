"""SMTP connections in parallel, shared rate limits, and the stop rules of a run.

The calling thread builds messages and ``[smtp] connections`` threads send them, each
on its own reused connection (one connection too: building the next messages overlaps
the server's replies). A 4xx or a lost connection sends the job back for a later
retry round; an authentication, TLS or database failure stops the run at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import cast

from ..config import Config
from ..errors import SendError
from ..timing import timed
from ._claims import UNKNOWN_LIMIT
from ._log import DeliveryLog, Job
from ._smtp import Outcome, SmtpConnection, TemporaryServerError, tls_context

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]

QUEUE = 64  # messages built ahead of the connections: a claimed batch (about 40 KB each)
SWITCH_INTERVAL = 0.00025  # seconds, per connection: how soon a reply is read (at most 1 ms)
_NONE = object()  # no next job waiting


def pause(sleep: Sleep, halt: threading.Event | None, seconds: float) -> None:
    """Wait, but wake up at once when ``halt`` is set (with the real clock only: an
    injected ``sleep`` is called as is)."""
    if halt is not None and sleep is time.sleep:
        halt.wait(seconds)
    else:
        sleep(seconds)


class RateLimit:
    """Messages per second and per hour, shared by all connections (and with ``reserve``,
    the per-second rate by every run sending through the relay)."""

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        sleep: Sleep,
        recent: Iterable[float] = (),
        halt: threading.Event | None = None,
        reserve: Callable[[int], float] | None = None,
    ) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        # Shared pacing: ``reserve(k)`` books k slots on the relay for every run sending
        # through it and says when the first one is (``time.monotonic()``); this run sends
        # only in the slots it booked, a quarter of a second's worth at a time.
        self.reserve = reserve
        self.booked = 0
        self.booked_until = 0.0
        self.per_hour = per_hour
        self.sleep = sleep
        self.halt = halt
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
            if self.reserve is not None and self.interval:
                if not self.booked or max(now, self.next_at) >= self.booked_until:
                    k = max(1, int(0.25 / self.interval))
                    self.next_at = max(self.reserve(k), now)
                    self.booked, self.booked_until = k, self.next_at + k * self.interval
                    now = time.monotonic()  # booking took a round trip: wait from here
                self.booked -= 1
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
            pause(self.sleep, self.halt, at - now)


class Abort(Exception):
    """This job could not be attempted: the run is stopping (``fatal`` or ``unreachable``)."""


class Lost(Exception):
    """This job's claim was taken over by another run: it is theirs to send."""


class SmtpPool:
    """``[smtp] connections`` worker threads, each with its own reused connection."""

    def __init__(
        self,
        cfg: Config,
        dlog: DeliveryLog,
        sleep: Sleep,
        rate: RateLimit,
        halt: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.dlog = dlog
        self.sleep = sleep
        self.rate = rate
        self.password = cfg.smtp_password()
        self.context = tls_context(cfg) if cfg.smtp.security != "none" else None
        self.sender = cfg.sender.address
        self.fatal: BaseException | None = None  # auth, TLS, database: raise at once
        self.unreachable = ""  # the server refused connections on every retry
        self._stop = threading.Event()  # set by the pool itself (fatal, unreachable)
        self.halt = halt or threading.Event()  # set from outside: finish in-flight, then stop

    def stopping(self) -> bool:
        return self._stop.is_set() or self.halt.is_set()

    def run(self, batches: Iterable[list[Job]]) -> tuple[list[Job], list[Job]]:
        """Send every job; returns (refused for now, never attempted). Stops feeding when
        the server is unreachable; raises the fatal error, if any, after the workers end.

        The calling thread builds messages (it consumes ``batches``) while ``[smtp]
        connections`` threads send them, so building and the server's replies overlap
        even with one connection."""
        retry: list[Job] = []
        left: list[Job] = []
        lock = threading.Lock()
        self._threaded(batches, retry, left, lock)
        if self.fatal is not None:
            raise Fatal(self.fatal, retry + left)
        return retry, left

    def _threaded(
        self, batches: Iterable[list[Job]], retry: list[Job], left: list[Job], lock: threading.Lock
    ) -> None:
        n = self.cfg.smtp.connections
        # Room for a whole batch: the calling thread builds the next batch of messages
        # while the connections send this one.
        q: queue.Queue[Job | None] = queue.Queue(maxsize=max(2 * n, QUEUE))
        threads = [
            threading.Thread(
                target=self._worker, args=(q, retry, left, lock), name=f"smtp-{i}", daemon=True
            )
            for i in range(n)
        ]
        for t in threads:
            t.start()
        # A connection's thread waits for the server's reply with the GIL released; when
        # the reply comes, it must get the GIL back from the thread building messages,
        # which by default lets go only every 5 ms: far too slow for a reply a fraction
        # of a millisecond away. Switch threads more often while sending: with several
        # connections each can wait a little longer (and switching costs CPU).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL * n, 0.001))
        try:
            for batch in batches:
                for i, job in enumerate(batch):
                    if self.stopping():
                        left.extend(batch[i:])
                        break
                    q.put(job)  # workers keep taking jobs until they get None
                if self.stopping():
                    break
        finally:
            for _ in threads:
                q.put(None)
            for t in threads:
                t.join()
            sys.setswitchinterval(switch)

    def _worker(
        self, q: queue.Queue[Job | None], retry: list[Job], left: list[Job], lock: threading.Lock
    ) -> None:
        """Take jobs until the end marker (None), each with the one after it when it is
        already waiting, so its envelope can go out with this message's data."""
        conn = SmtpConnection(self.cfg, self.password, self.context)
        ahead = not self.rate.active  # a rate limit paces each message's start
        try:
            job = q.get()
            while job is not None:
                nxt: Job | object | None = _NONE
                if ahead:
                    with contextlib.suppress(queue.Empty):
                        nxt = q.get_nowait()
                if self.stopping():
                    conn.abandon()
                    with lock:
                        left.append(job)
                else:
                    then = nxt if isinstance(nxt, Job) else None
                    self._handle(conn, job, retry, left, lock, then)
                job = q.get() if nxt is _NONE else cast("Job | None", nxt)
        finally:
            conn.close()

    def _handle(
        self,
        conn: SmtpConnection,
        job: Job,
        retry: list[Job],
        left: list[Job],
        lock: threading.Lock,
        then: Job | None = None,
    ) -> None:
        """Send one job and log its outcome; a 4xx or lost connection goes to ``retry``.
        ``then`` is the job this connection sends next (see ``SmtpConnection.send``)."""
        try:
            outcome = self._send(conn, job, then)
            if outcome.status in ("temporary", "dropped"):
                job.last = outcome.reply
                with lock:
                    retry.append(job)
            else:
                status = "sent" if outcome.status == "sent" else "failed"
                # ``then`` goes out next on this connection: its try is logged with this
                # outcome, in the same transaction, rather than in one of its own.
                nxt = then if then is not None and not then.ready and not self.stopping() else None
                self.dlog.record(job, status, outcome.reply, nxt)
        except Abort:
            conn.abandon()
            with lock:
                left.append(job)
        except Lost:
            conn.abandon()  # its envelope may have gone ahead: the server drops it
            self.dlog.taken_over(job)
        except BaseException as exc:  # the database failed (or a bug): stop everything
            with lock:
                left.append(job)
                self.fatal = self.fatal or exc
            self._stop.set()
        finally:
            self.dlog.sent(job)  # no outcome was queued (or it was: then nothing to do)

    def _send(self, conn: SmtpConnection, job: Job, then: Job | None = None) -> Outcome:
        """One message, reconnecting after a dropped connection (same bytes each time)."""
        backoff = self.cfg.smtp.retry_backoff
        most = self.cfg.smtp.max_per_connection
        failures = 0
        while True:
            if conn.smtp is not None and conn.sent >= most:
                conn.close()
            if conn.smtp is None:
                try:
                    with timed("smtp", 0):
                        conn.open()
                except TemporaryServerError as exc:
                    failures += 1
                    if self.halt.is_set():
                        raise Abort(str(exc)) from exc
                    if failures > self.cfg.smtp.retries or self._stop.is_set():
                        self.unreachable = self.unreachable or str(exc)
                        self._stop.set()
                        raise Abort(str(exc)) from exc
                    delay = backoff * 2 ** (failures - 1)
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    pause(self.sleep, self.halt, delay)
                    continue
                except SendError as exc:  # AuthError, TLS problems: stop the run now
                    self.fatal = self.fatal or exc
                    self._stop.set()
                    raise Abort(str(exc)) from exc
            self.rate.wait()
            if self.halt.is_set():
                raise Abort("stopping")
            if job.lost or not (job.ready or self.dlog.tried(job)):
                raise Lost(job.email)
            job.ready = False
            job.tries += 1
            ahead = None
            if then is not None and conn.sent + 1 < most and not self.stopping():
                ahead = (self.sender, then.rcpt, then.data)
            self.dlog.sending(job)
            with timed("smtp"):
                outcome = conn.send(self.sender, job.rcpt, job.data, then=ahead)
            if outcome.unknown:
                job.unknown += 1
                if job.unknown >= UNKNOWN_LIMIT:
                    return Outcome("permanent", _gave_up(job.unknown, outcome.reply))
            if outcome.status != "dropped":
                return outcome
            failures += 1
            log.warning("%s: %s; reconnecting", job.email, outcome.reply)
            if failures > self.cfg.smtp.retries:
                return outcome


def _gave_up(times: int, reply: str) -> str:
    return (
        f"outcome unknown: {times} tries ended before the server confirmed the message "
        f"(last: {reply}); not sent again, as it may have arrived (every copy has the same "
        "Message-ID): check the relay"
    )


class Fatal(Exception):
    """The run must stop: ``error`` says why; ``unfinished`` are the jobs not sent."""

    def __init__(self, error: BaseException, unfinished: list[Job]) -> None:
        super().__init__(str(error))
        self.error = error
        self.unfinished = unfinished
