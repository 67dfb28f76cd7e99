"""One run: where the stages meet. Per-feed and per-subscriber failures are collected, not fatal.

Who is due for which edition is decided by ``digest.schedule`` (pure functions of ``now``);
an edition's papers are those first seen since the previous edition's cut-off (the store),
and a weekly digest ranks the papers of the editions of the last seven days.
"""

from __future__ import annotations

import gc
import logging
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from filelock import FileLock, Timeout

from . import stages
from .config import Config
from .errors import DigestError, LockedError, ProfileError
from .models import Digest, Keyword, Paper, Profile, Scored
from .profiles import iter_profiles
from .schedule import subscriber_edition, why_not_due
from .stages import timed
from .store import Store
from .tally import Tally

if TYPE_CHECKING:
    from .rank import Ranker
    from .render import Renderer
    from .send import Outgoing

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

ALREADY_SENT = "already sent this edition"
UNSUBSCRIBED = "unsubscribed"
BATCH = 500  # subscribers loaded, planned, ranked and rendered together


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FetchSummary:
    ok: list[tuple[str, int]] = field(default_factory=list)  # (feed, papers parsed)
    not_modified: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (feed, reason)
    new: int = 0
    updated: int = 0


@dataclass
class Pick:
    """What one subscriber got, for the run summary."""

    email: str
    count: int
    top: str


@dataclass
class RunSummary:
    """What a run did. The per-subscriber lists keep a sample (the first ``tally.SAMPLE``)
    and count everyone in their ``total``, so the summary of a run over 100,000
    subscribers stays small."""

    edition: date
    fetch: FetchSummary | None = None
    candidates: int = 0
    picks: Tally[Pick] = field(default_factory=Tally)
    nothing: Tally[str] = field(default_factory=Tally)  # nothing above threshold
    skipped: Tally[tuple[str, str]] = field(default_factory=Tally)  # (email, why)
    profile_errors: Tally[str] = field(default_factory=Tally)
    delivery: object | None = None  # digest.send.DeliverySummary
    editions: list[date] = field(default_factory=list)  # the editions that went out this run
    due: int = 0  # subscribers due now and not yet sent their edition
    stopped: bool = False  # asked to stop (SIGTERM) before everything due went out
    skipped_by: dict[str, int] = field(default_factory=dict)  # why -> how many

    @property
    def ok(self) -> bool:
        feeds_ok = self.fetch is None or not self.fetch.errors
        delivery_ok = self.delivery is None or bool(getattr(self.delivery, "ok", True))
        return feeds_ok and delivery_ok and not self.profile_errors

    def skip(self, email: str, why: str) -> None:
        self.skipped.append((email, why))
        self.skipped_by[why] = self.skipped_by.get(why, 0) + 1

    def profile_error(self, error: ProfileError) -> None:
        log.error("%s", error)
        self.profile_errors.append(str(error))

    def skipped_counts(self) -> dict[str, int]:
        return dict(self.skipped_by)

    def as_dict(self) -> dict[str, object]:
        d = self.delivery
        return {
            "edition": self.edition.isoformat(),
            "candidates": self.candidates,
            "feed_errors": self.fetch.errors if self.fetch else [],
            "new_papers": self.fetch.new if self.fetch else 0,
            "profile_errors": self.profile_errors,
            "nothing": self.nothing.total,
            "sent": _total(getattr(d, "sent", [])),
            "already_sent": _total(getattr(d, "already_sent", [])),
            "deferred": getattr(d, "deferred", []),
            "failed": getattr(d, "failed", []),
            "deferred_total": _total(getattr(d, "deferred", [])),
            "failed_total": _total(getattr(d, "failed", [])),
            "editions": [e.isoformat() for e in self.editions],
            "due": self.due,
            "skipped": self.skipped_counts(),
            "stopped": self.stopped,
            "ok": self.ok,
        }


def _total(items: Sequence[object]) -> int:
    return int(getattr(items, "total", len(items)))


def edition_for(cfg: Config, now: datetime) -> date:
    """Today's edition on the service's clock: the date in the configured timezone.
    (A subscriber with a send hour is on their own local date: see schedule.subscriber_edition.)
    """
    return now.astimezone(ZoneInfo(cfg.timezone)).date()


@contextmanager
def run_lock(cfg: Config, wait: float = 0.0) -> Iterator[None]:
    """One run at a time per configuration (cron may start several)."""
    path = cfg.lock_path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait)
    except Timeout as exc:
        raise LockedError(
            f"another digest run holds {path}; it will finish the edition. "
            "Try again later or pass --wait SECONDS"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def fetch_all(
    cfg: Config,
    store: Store,
    now: Clock,
    *,
    sleep: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> FetchSummary:
    """Fetch every enabled feed and store its papers; a failing feed is reported, not fatal.
    Once ``stop`` is set, the feeds not yet started are left for the next run."""
    from .sources import Fetcher

    summary = FetchSummary()
    kwargs = {"sleep": sleep} if sleep is not None else {}
    with Fetcher(cfg.http, cfg.sender.address, **kwargs) as fetcher:  # type: ignore[arg-type]
        for feed in cfg.feeds:
            if not feed.enabled:
                continue
            if stop is not None and stop.is_set():
                log.info("stopping: feeds from %s on are left for the next run", feed.name)
                break
            url = cfg.feed_base(feed.url)
            feed = feed.model_copy(update={"url": url})
            try:
                result = fetcher.fetch(feed, store.feed_state(feed.name))
            except DigestError as exc:
                log.warning("feed %s failed: %s", feed.name, exc)
                summary.errors.append((feed.name, str(exc)))
                store.record_feed(feed.name, url, now(), error=str(exc))
                continue
            if result.not_modified:
                summary.not_modified.append(feed.name)
                store.record_feed(
                    feed.name, url, now(), etag=result.etag, last_modified=result.last_modified
                )
                continue
            new, updated = store.upsert_papers(result.papers, now())
            summary.new += new
            summary.updated += updated
            summary.ok.append((feed.name, len(result.papers)))
            store.record_feed(
                feed.name,
                url,
                now(),
                etag=result.etag,
                last_modified=result.last_modified,
                count=len(result.papers),
            )
            log.info("feed %s: %d papers (%d new)", feed.name, len(result.papers), new)
    return summary


def edition_papers(
    store: Store, edition: date, now: datetime, *, create: bool = True
) -> list[Paper]:
    """The papers first seen since the previous edition's cut-off, up to this one's."""
    after, until = store.edition_window(edition, now, create=create)
    return store.papers_seen_between(after, until)


def week_papers(store: Store, edition: date, now: datetime, *, create: bool = True) -> list[Paper]:
    """A weekly digest's candidates: the papers of every edition in the seven days up to
    ``edition`` (first seen after the cut-off of the last edition a week or more before it)."""
    _, until = store.edition_window(edition, now, create=create)
    older = [cutoff for day, cutoff in store.editions() if day <= edition - timedelta(days=7)]
    return store.papers_seen_between(older[-1] if older else None, until)


class Planner:
    """Ranks and renders digests for one edition; papers encoded once, profiles once.

    ``ranker`` and ``renderer`` may be shared by the planners of one run (daily and
    weekly editions): papers embedded and cards compiled for one are reused by the next.
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        edition: date,
        papers: Sequence[Paper],
        now: datetime,
        *,
        ranker: Ranker | None = None,
        renderer: Renderer | None = None,
    ):
        from .rank import Ranker
        from .render import Renderer

        self.cfg = cfg
        self.store = store
        self.edition = edition
        self.now = now
        with timed("prepare"):
            self.ranker = ranker or Ranker(cfg.ranking)
            self.corpus = self.ranker.prepare(papers, now)
            self.by_id = {p.id: p for p in papers}
            self.renderer = renderer or Renderer(cfg)
            self.renderer.begin_edition(papers)

    def liked_papers(self, profile: Profile) -> list[Paper]:
        if not profile.liked:
            return []
        local = [self.by_id[i] for i in profile.liked if i in self.by_id]
        missing = [i for i in profile.liked if i not in self.by_id]
        return local + (self.store.get_papers(missing) if missing else [])

    def pick(self, profile: Profile, top: int | None = None) -> list[Scored]:
        # Every paper sent in another edition is left out, earlier or (after a backfill) later.
        seen = self.store.sent_paper_ids(profile.email, other_than=self.edition)
        return self.ranker.rank(
            self.corpus, profile, seen=seen, liked_papers=self.liked_papers(profile), top=top
        )

    def pick_many(self, profiles: Sequence[Profile], top: int | None = None) -> list[list[Scored]]:
        """``pick`` for many profiles at once: a few queries and one batched ranking."""
        seen = self.store.sent_papers_of(
            [p.email for p in profiles], other_than=self.edition, among=self.corpus.rows
        )
        missing = sorted({i for p in profiles for i in p.liked if i not in self.by_id})
        stored = {p.id: p for p in self.store.get_papers(missing)} if missing else {}
        liked: dict[str, list[Paper]] = {}
        for p in profiles:
            if p.liked:
                local = [self.by_id[i] for i in p.liked if i in self.by_id]
                liked[p.email] = local + [
                    stored[i] for i in p.liked if i not in self.by_id and i in stored
                ]
        return list(
            self.ranker.rank_many(self.corpus, profiles, seen=seen, liked_papers=liked, top=top)
        )

    def digest(self, profile: Profile, picks: Sequence[Scored]) -> Digest:
        return Digest(profile=profile, edition=self.edition, picks=tuple(picks))


def run(
    cfg: Config,
    *,
    now: Clock = utcnow,
    edition: date | None = None,
    fetch: bool = True,
    sleep: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """Fetch, rank, render and deliver what is due now. Call inside ``run_lock``.

    Each subscriber gets the edition they are on once they are due (``digest.schedule``);
    ``edition`` puts everyone on that edition (a re-run or a backfill). When nobody is due,
    nothing is fetched or sent. ``stop`` (set from another thread, say on SIGTERM) ends the
    run between feeds and between messages; what was not sent goes out on the next run.

    Subscribers are streamed: read, planned, ranked, rendered and sent ``BATCH`` at a time,
    so memory does not grow with the subscriber list.
    """
    from .send import deliver

    stages.reset()
    start = now()
    store = Store(cfg.database_url)
    try:
        summary = RunSummary(edition=edition or edition_for(cfg, start))
        run_id = store.start_run(start, summary.edition)
        with Roster() as roster, _steady_gc():
            profiles = iter_profiles(cfg.subscribers_path, summary.profile_error)
            plan(cfg, store, profiles, start, edition, summary, roster)
            summary.due = len(roster)
            summary.editions = sorted({ed for ed, _ in roster.groups()})
            if not roster:
                log.info(
                    "nobody is due at %s; nothing fetched or sent (%s)",
                    start.isoformat(timespec="minutes"),
                    _counts(summary.skipped_counts()),
                )
            elif not _stopping(stop, summary):
                if fetch:
                    with timed("fetch"):
                        summary.fetch = fetch_all(cfg, store, now, sleep=sleep, stop=stop)
                if not _stopping(stop, summary):
                    stream = _outgoing(cfg, store, roster, now, summary, stop)
                    # Each subscriber is in the roster once (one file per address, one
                    # edition each): the delivery needs no record of who came already.
                    summary.delivery = deliver(cfg, store, stream, now=now, stop=stop, unique=True)
                    if stop is not None and stop.is_set():
                        summary.stopped = True
                    _stopping(stop, summary)  # deliver() may have stopped before asking for more
        store.finish_run(run_id, now(), summary.as_dict())
        log.info("time per stage (CPU): %s", stages.summary_line())
        return summary
    finally:
        store.close()


Key = tuple[date, str]  # (edition, frequency)


class Roster:
    """The subscribers due in this run, by (edition, frequency), kept in a temporary file
    (pickled in batches) rather than in memory; read back one group at a time, in order."""

    def __init__(self) -> None:
        self._files: dict[Key, IO[bytes]] = {}
        self._counts: dict[Key, int] = {}

    def __enter__(self) -> Roster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __len__(self) -> int:
        return sum(self._counts.values())

    def add(self, key: Key, profiles: Sequence[Profile]) -> None:
        if not profiles:
            return
        f = self._files.get(key)
        if f is None:
            f = tempfile.TemporaryFile(prefix="digest-due-")  # noqa: SIM115 - closed by close()
            self._files[key] = f
        pickle.dump([_flat(p) for p in profiles], f, protocol=pickle.HIGHEST_PROTOCOL)
        self._counts[key] = self._counts.get(key, 0) + len(profiles)

    def groups(self) -> list[Key]:
        return sorted(self._files)

    def count(self, key: Key) -> int:
        return self._counts.get(key, 0)

    def members(self, key: Key, size: int = BATCH) -> Iterator[list[Profile]]:
        """The group's subscribers, in the order added, in lists of up to ``size``."""
        f = self._files[key]
        f.flush()
        f.seek(0)
        chunk: list[Profile] = []
        while True:
            try:
                chunk.extend(map(_profile, pickle.load(f)))
            except EOFError:
                break
            while len(chunk) >= size:
                yield chunk[:size]
                chunk = chunk[size:]
        if chunk:
            yield chunk


_FIELDS = tuple(f.name for f in fields(Profile))
_KEYWORDS, _PATH, _LIKED_FILE = (_FIELDS.index(n) for n in ("keywords", "path", "liked_file"))


def _flat(profile: Profile) -> tuple[Any, ...]:
    """A profile as plain values (keywords as pairs, paths as text): half the cost of
    pickling the objects, both ways."""
    values = [getattr(profile, name) for name in _FIELDS]
    values[_KEYWORDS] = tuple((k.term, k.weight) for k in profile.keywords)
    for i in (_PATH, _LIKED_FILE):
        values[i] = None if values[i] is None else str(values[i])
    return tuple(values)


def _profile(values: tuple[Any, ...]) -> Profile:
    flat = list(values)
    flat[_KEYWORDS] = tuple(Keyword(term, weight) for term, weight in flat[_KEYWORDS])
    for i in (_PATH, _LIKED_FILE):
        flat[i] = None if flat[i] is None else Path(flat[i])
    return Profile(*flat)


def _batches(profiles: Iterable[Profile], size: int) -> Iterator[list[Profile]]:
    """Lists of up to ``size`` profiles, the reading of the files timed as "load"."""
    it = iter(profiles)
    while True:
        with timed("load", 0) as t:
            chunk = list(islice(it, size))
            t.count = len(chunk)
        if not chunk:
            return
        yield chunk


def plan(
    cfg: Config,
    store: Store,
    profiles: Iterable[Profile],
    now: datetime,
    edition: date | None,
    summary: RunSummary,
    roster: Roster,
) -> Roster:
    """Who gets which edition now: active, not suppressed, due, and not yet sent it.
    ``profiles`` is consumed in batches; the subscribers due go to ``roster``."""
    suppressed = store.suppressed()
    for batch in _batches(profiles, BATCH):
        with timed("plan", len(batch)):
            groups: dict[Key, list[Profile]] = {}
            for profile in batch:
                if not profile.active or profile.email.lower() in suppressed:
                    summary.skip(profile.email, UNSUBSCRIBED)
                    continue
                ed = edition or subscriber_edition(cfg, profile, now)
                why = why_not_due(profile, now, ed)
                if why is not None:
                    log.debug("%s: %s for edition %s", profile.email, why, ed)
                    summary.skip(profile.email, why)
                    continue
                groups.setdefault((ed, profile.frequency), []).append(profile)
            for key in sorted(groups):
                members = groups[key]
                status = store.delivery_statuses(key[0], [m.email for m in members])
                keep = []
                for m in members:
                    if status.get(m.email) == "sent":
                        summary.skip(m.email, ALREADY_SENT)
                    else:
                        keep.append(m)
                roster.add(key, keep)
    return roster


def _outgoing(
    cfg: Config,
    store: Store,
    roster: Roster,
    now: Clock,
    summary: RunSummary,
    stop: threading.Event | None,
) -> Iterator[Outgoing]:
    """Rank and render each due subscriber's digest, one edition (or week) at a time, a
    batch of subscribers at a time."""
    from .headers import signed_url, unsubscribe_base, unsubscribe_secret
    from .send import Outgoing

    base = unsubscribe_base(cfg)
    secret = unsubscribe_secret(cfg) if base else b""
    candidates: set[str] = set()
    ranker: Ranker | None = None
    renderer: Renderer | None = None
    at = now()  # one moment for every edition of the run: the same papers, the same scores
    for key in roster.groups():
        edition, frequency = key
        if _stopping(stop, summary):
            return
        weekly = frequency == "weekly"
        with timed("prepare", 0):  # the edition's papers, read from the database
            papers = (
                week_papers(store, edition, at) if weekly else edition_papers(store, edition, at)
            )
        candidates.update(p.id for p in papers)
        summary.candidates = len(candidates)
        log.info(
            "edition %s%s: %d candidate papers, %d subscriber(s) due",
            edition,
            " (weekly)" if weekly else "",
            len(papers),
            roster.count(key),
        )
        if not papers:
            _explain_empty(store, edition)
        planner = None
        if papers:
            planner = Planner(cfg, store, edition, papers, at, ranker=ranker, renderer=renderer)
            ranker, renderer = planner.ranker, planner.renderer
            gc.freeze()  # the edition's index, embeddings and cards: here for the run
        for batch in roster.members(key):
            if _stopping(stop, summary):
                return
            chosen = _pick(planner, batch, summary)
            for profile, picks in zip(batch, chosen, strict=True):
                if _stopping(stop, summary):
                    return
                if picks is None:
                    continue
                unsub = signed_url(base, secret, profile.email) if base else ""
                try:
                    with timed("render"):
                        if not picks:
                            summary.nothing.append(profile.email)
                            if cfg.empty_digest != "note":
                                log.info(
                                    "%s: nothing above min_score %.2f in %d papers; not "
                                    'sending (empty_digest = "skip")',
                                    profile.email,
                                    profile.min_score,
                                    len(papers),
                                )
                                continue
                            if renderer is None:
                                from .render import Renderer

                                renderer = Renderer(cfg)
                            rendered = renderer.render_empty(
                                profile, edition, unsubscribe_url=unsub
                            )
                        else:
                            assert planner is not None
                            rendered = planner.renderer.render(
                                planner.digest(profile, picks), unsubscribe_url=unsub
                            )
                            summary.picks.append(
                                Pick(profile.email, len(picks), picks[0].paper.title)
                            )
                except DigestError as exc:
                    log.error("%s: %s", profile.path or profile.email, exc)
                    summary.profile_errors.append(f"{profile.path or profile.email}: {exc}")
                    continue
                yield Outgoing(profile, edition, rendered, tuple(s.paper.id for s in picks))


def _pick(
    planner: Planner | None, batch: list[Profile], summary: RunSummary
) -> list[list[Scored] | None]:
    """Each profile's picks (None for a profile that failed), ranked as one batch; when
    the batch fails, one at a time, so one bad profile costs only its own digest."""
    if planner is None:
        return [[] for _ in batch]
    try:
        with timed("rank", len(batch)):
            ranked: list[list[Scored] | None] = list(planner.pick_many(batch))
        return ranked
    except DigestError as exc:
        log.warning(
            "ranking %d subscribers together failed (%s); ranking one by one", len(batch), exc
        )
    out: list[list[Scored] | None] = []
    for profile in batch:
        try:
            with timed("rank"):
                out.append(planner.pick(profile))
        except DigestError as exc:
            log.error("%s: %s", profile.path or profile.email, exc)
            summary.profile_errors.append(f"{profile.path or profile.email}: {exc}")
            out.append(None)
    return out


@contextmanager
def _steady_gc() -> Iterator[None]:
    """The cyclic garbage collector, told to skip what is alive when a run starts and
    each edition's prepared state (modules, the model, indexes, cards: a million objects
    it would otherwise walk again in every full collection, some 8% of a run's time), and
    to run less often; the run makes few reference cycles. Undone when the run ends."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _stopping(stop: threading.Event | None, summary: RunSummary) -> bool:
    if stop is None or not stop.is_set():
        return False
    if not summary.stopped:
        log.info("stopping: subscribers not sent yet get theirs on the next run")
    summary.stopped = True
    return True


def _explain_empty(store: Store, edition: date) -> None:
    later = [day for day, _ in store.editions() if day > edition]
    if later:
        log.info(
            "edition %s is empty: it was first run after edition %s, which already carried "
            "its papers",
            edition,
            later[0],
        )
    else:
        log.info("edition %s: no paper first seen since the previous edition", edition)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items())) or "no subscribers"
