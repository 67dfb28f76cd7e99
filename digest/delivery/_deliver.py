"""Delivering one edition: the outgoing stream in, each message out once, a summary back.

A batch of messages is claimed (marked ``sending`` with its Message-ID, for this run only:
see ``_claims``) before any of them goes out, each try is logged before it starts, and
each message's final state is committed as soon as the server answers, before the next
message goes out on that connection. So after a crash at most one message per connection
was accepted by the server without being marked sent; a rerun takes back every
``sending`` row of a run that is gone and resends it with the same Message-ID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice

from ..clock import Clock
from ..config import Config
from ..errors import SendError
from ..models import Rendered
from ..store import Holder, Store
from ..timing import timed
from ._claims import UNKNOWN_LIMIT
from ._headers import ascii_address, message_id
from ._log import DeliveryLog, DeliverySummary, Job, Outgoing, defer
from ._mime import Composer
from ._outbox import Outbox
from ._pool import Fatal, RateLimit, Sleep, SmtpPool, pause

log = logging.getLogger(__name__)

# Messages claimed (marked "sending") per database transaction: their bytes wait in memory
# until the batch is claimed, 64 of some 40 KB each.
BATCH = 64
_BUILT = Rendered(subject="", html="", text="")  # in a job whose message is built


def _chunks(
    items: Iterable[Outgoing], size: int, halt: threading.Event | None = None
) -> Iterator[list[Outgoing]]:
    """Lists of up to ``size`` items; with ``halt``, nothing more is taken once it is set."""
    it = iter(items)
    if halt is None:
        while chunk := list(islice(it, size)):
            yield chunk
        return
    while not halt.is_set():
        chunk = []
        for item in it:
            chunk.append(item)
            if len(chunk) == size or halt.is_set():
                break
        if not chunk:
            return
        yield chunk


class _Feeder:
    """Turns the outgoing stream into claimed jobs, skipping what was already sent."""

    def __init__(
        self,
        cfg: Config,
        dlog: DeliveryLog,
        now: Clock,
        halt: threading.Event | None,
        unique: bool = False,
    ) -> None:
        self.composer = Composer(cfg)
        self.dlog = dlog
        self.now = now
        self.halt = halt
        self.unique = unique  # the stream lists each (subscriber, edition) once: no check
        # (subscriber, edition) pairs taken so far, as hashes: some 60 bytes each rather
        # than 170 for the pair itself, which counts at 100,000 subscribers. Two pairs
        # with one hash (about one chance in 10^9 at that size) would leave the second
        # pair unsent this run, logged, and due again at the next.
        self.seen: set[int] = set()

    def first(self, item: Outgoing) -> bool:
        """Whether ``item`` is the first for its (subscriber, edition) in this run."""
        if self.unique:
            return True
        key = hash((item.profile.email.lower(), item.edition))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def jobs(self, outgoing: Iterable[Outgoing]) -> Iterator[list[Job]]:
        built: dict[int, tuple[str, bytes | SendError]] = {}
        for chunk in _chunks(self._build(outgoing, built), BATCH, self.halt):
            jobs: list[Job] = []
            for edition, items in _by_edition(chunk).items():
                with timed("log"):
                    held = self.dlog.holders(edition, [o.profile.email for o in items])
                for item in items:
                    mid, data = built.pop(id(item))
                    job = self._job(item, mid, data, held.get(item.profile.email))
                    if job is not None:
                        jobs.append(job)
            if jobs:
                with timed("log"):
                    jobs = self.dlog.claim(jobs)
                if jobs:
                    yield jobs

    def _build(
        self, outgoing: Iterable[Outgoing], built: dict[int, tuple[str, bytes | SendError]]
    ) -> Iterator[Outgoing]:
        """Each item with its message built as soon as it comes (in ``built``, by the
        item's id, with its Message-ID), so only the bytes of a batch wait for it to fill,
        not its rendered HTML and text; the item itself goes on without them."""
        composer = self.composer
        for item in outgoing:
            with timed("mime"):
                mid = message_id(item.profile.email, item.edition, composer.domain)
                data: bytes | SendError
                try:
                    data = composer.build(
                        item.profile, item.edition, item.rendered, now=self.now(), mid=mid
                    )
                except SendError as exc:
                    data = exc
                slim = Outgoing(item.profile, item.edition, _BUILT, item.paper_ids)
                built[id(slim)] = (mid, data)
            yield slim

    def _job(
        self, item: Outgoing, mid: str, data: bytes | SendError, held: Holder | None
    ) -> Job | None:
        email = item.profile.email
        if not self.first(item):
            log.warning("%s: listed twice for edition %s; sending once", email, item.edition)
            return None
        if held is not None and self._settled(Job(item, mid, b""), held):
            return None
        try:
            rcpt = ascii_address(email)
            if isinstance(data, SendError):
                raise data
        except SendError as exc:
            for job in self.dlog.claim([Job(item, mid, b"")]):
                self.dlog.record(job, "failed", str(exc))
            return None
        return Job(item, mid, data, rcpt)

    def _settled(self, job: Job, held: Holder) -> bool:
        """Whether ``job``'s row says it is not to be sent: sent already, or given up."""
        if held.status == "sent":
            self.dlog.summary.already_sent.append(job.email)
            return True
        if held.unknown >= UNKNOWN_LIMIT:
            self.dlog.given_up(job)
            return True
        return False

    def defer_rest(self, stream: Iterator[Outgoing], reason: str) -> None:
        """Log the rest of the stream as deferred, without building the messages."""
        for chunk in _chunks(stream, BATCH):
            jobs: list[Job] = []
            for edition, items in _by_edition(chunk).items():
                held = self.dlog.holders(edition, [o.profile.email for o in items])
                for item in items:
                    if not self.first(item):
                        continue
                    mid = message_id(item.profile.email, item.edition, self.composer.domain)
                    job = Job(item, mid, b"")
                    h = held.get(item.profile.email)
                    if h is None or not self._settled(job, h):
                        jobs.append(job)
            defer(self.dlog, self.dlog.claim(jobs), reason)


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
    stop: threading.Event | None = None,
    unique: bool = False,
) -> DeliverySummary:
    """Send each outgoing digest once per (subscriber, edition); see the module docstring.

    ``outgoing`` is consumed as messages go out (it may be a generator over many
    subscribers). An authentication or TLS failure raises at once (AuthError/SendError):
    the messages of this run not yet sent are left ``deferred`` and none is marked sent.
    Once ``stop`` is set (say on SIGTERM), the messages in flight finish, nothing more is
    taken from ``outgoing``, and those taken but not attempted go back to ``pending``
    (listed in ``stopped``) for the next run. A subscriber listed twice for an edition
    gets it once, unless the caller says with ``unique`` that the stream lists each
    (subscriber, edition) once (the run's roster does): then nothing is kept to check it.
    """
    dlog = DeliveryLog(store, now)
    try:
        feeder = _Feeder(cfg, dlog, now, stop, unique)
        stream = iter(outgoing)
        if cfg.smtp.host:
            _send_smtp(cfg, store, dlog, feeder, stream, now, sleep, stop)
        else:
            _pending(dlog, Outbox(cfg, dlog, stop).run(feeder.jobs(stream)))
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
    stop: threading.Event | None,
) -> None:
    recent = _recent(store, now) if cfg.smtp.rate_per_hour else ()
    reserve = _pace(store, cfg) if cfg.smtp.rate_per_second else None
    rate = RateLimit(
        cfg.smtp.rate_per_second, cfg.smtp.rate_per_hour, sleep, recent, stop, reserve=reserve
    )
    pool = SmtpPool(cfg, dlog, sleep, rate, stop)
    try:
        retry, left = pool.run(feeder.jobs(stream))
        for attempt in range(1, cfg.smtp.retries + 1):
            if not retry or pool.unreachable or pool.halt.is_set():
                break
            delay = cfg.smtp.retry_backoff * 2 ** (attempt - 1)
            log.info(
                "%d message(s) refused for now; retry %d of %d in %.1f s",
                len(retry),
                attempt,
                cfg.smtp.retries,
                delay,
            )
            pause(sleep, stop, delay)
            if pool.halt.is_set():
                break
            retry, more = pool.run([retry])
            left.extend(more)
    except Fatal as exc:
        defer(dlog, exc.unfinished, f"not sent: {exc.error}")
        raise exc.error from None
    defer(dlog, retry, "")
    if pool.unreachable:
        reason = f"server unavailable: {pool.unreachable}"
        defer(dlog, left, reason)
        feeder.defer_rest(stream, reason)
    elif pool.halt.is_set():
        _pending(dlog, left)
    else:
        defer(dlog, left, "not sent")


def _pending(dlog: DeliveryLog, jobs: list[Job]) -> None:
    """Jobs never attempted because the run was asked to stop: back to ``pending``."""
    if jobs:
        log.info("stopping: %d message(s) left for the next run", len(jobs))
        dlog.record_many([(job, "pending", "run stopped before sending") for job in jobs])


def _pace(store: Store, cfg: Config) -> Callable[[int], float]:
    """Slots on the relay booked in the database, so that ``[smtp] rate_per_second`` holds
    for every run sending through it at once (workers, other machines): when the first of
    ``k`` slots is, on ``time.monotonic()``. The wall clock, not the run's: slots are real
    moments."""
    relay = f"{cfg.smtp.host}:{cfg.smtp.port}:{cfg.smtp.user}"
    interval = 1.0 / cfg.smtp.rate_per_second

    def reserve(k: int) -> float:
        mono, wall = time.monotonic(), datetime.now(UTC)  # read together: one moment
        with timed("log"):
            first = store.reserve_slots(relay, wall, k, interval)
        return mono + max((first - wall).total_seconds(), 0.0)

    return reserve


def _recent(store: Store, now: Clock) -> list[float]:
    """Monotonic times of the messages sent in the last hour (by any run)."""
    current = now()
    mono = time.monotonic()
    times = store.sent_since(current - timedelta(hours=1))
    return [mono - (current - t).total_seconds() for t in times]
