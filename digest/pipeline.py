"""One run: where the stages meet. Per-feed and per-subscriber failures are collected, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from filelock import FileLock, Timeout

from .config import Config
from .errors import DigestError, LockedError
from .models import Digest, Paper, Profile, Scored
from .profiles import load_profiles
from .store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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
    edition: date
    fetch: FetchSummary | None = None
    candidates: int = 0
    picks: list[Pick] = field(default_factory=list)
    nothing: list[str] = field(default_factory=list)  # subscribers with nothing above threshold
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why): not due, inactive
    profile_errors: list[str] = field(default_factory=list)
    delivery: object | None = None  # digest.send.DeliverySummary

    @property
    def ok(self) -> bool:
        feeds_ok = self.fetch is None or not self.fetch.errors
        delivery_ok = self.delivery is None or bool(getattr(self.delivery, "ok", True))
        return feeds_ok and delivery_ok and not self.profile_errors

    def as_dict(self) -> dict[str, object]:
        d = self.delivery
        return {
            "edition": self.edition.isoformat(),
            "candidates": self.candidates,
            "feed_errors": self.fetch.errors if self.fetch else [],
            "new_papers": self.fetch.new if self.fetch else 0,
            "profile_errors": self.profile_errors,
            "nothing": len(self.nothing),
            "sent": len(getattr(d, "sent", [])),
            "already_sent": len(getattr(d, "already_sent", [])),
            "deferred": getattr(d, "deferred", []),
            "failed": getattr(d, "failed", []),
            "ok": self.ok,
        }


def edition_for(cfg: Config, now: datetime) -> date:
    """Today's edition: the date in the configured timezone."""
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


def fetch_all(cfg: Config, store: Store, now: Clock, *, sleep: Callable[[float], None] | None = None) -> FetchSummary:
    """Fetch every enabled feed and store its papers; a failing feed is reported, not fatal."""
    from .sources import Fetcher

    summary = FetchSummary()
    kwargs = {"sleep": sleep} if sleep is not None else {}
    with Fetcher(cfg.http, cfg.sender.address, **kwargs) as fetcher:
        for feed in cfg.feeds:
            if not feed.enabled:
                continue
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
                store.record_feed(feed.name, url, now(), etag=result.etag,
                                  last_modified=result.last_modified)
                continue
            new, updated = store.upsert_papers(result.papers, now())
            summary.new += new
            summary.updated += updated
            summary.ok.append((feed.name, len(result.papers)))
            store.record_feed(feed.name, url, now(), etag=result.etag,
                              last_modified=result.last_modified, count=len(result.papers))
            log.info("feed %s: %d papers (%d new)", feed.name, len(result.papers), new)
    return summary


def edition_papers(store: Store, edition: date, now: datetime, *, create: bool = True) -> list[Paper]:
    after, until = store.edition_window(edition, now, create=create)
    return store.papers_seen_between(after, until)


class Planner:
    """Ranks and renders digests for one edition; papers encoded once, profiles once."""

    def __init__(self, cfg: Config, store: Store, edition: date, papers: Sequence[Paper], now: datetime):
        from .rank import Ranker
        from .render import Renderer

        self.cfg = cfg
        self.store = store
        self.edition = edition
        self.now = now
        self.ranker = Ranker(cfg.ranking)
        self.corpus = self.ranker.prepare(papers, now)
        self.by_id = {p.id: p for p in papers}
        self.renderer = Renderer(cfg)
        if hasattr(self.renderer, "begin_edition"):
            self.renderer.begin_edition(papers)

    def liked_papers(self, profile: Profile) -> list[Paper]:
        if not profile.liked:
            return []
        local = [self.by_id[i] for i in profile.liked if i in self.by_id]
        missing = [i for i in profile.liked if i not in self.by_id]
        return local + (self.store.get_papers(missing) if missing else [])

    def pick(self, profile: Profile, top: int | None = None) -> list[Scored]:
        seen = self.store.sent_paper_ids(profile.email, before=self.edition)
        return self.ranker.rank(
            self.corpus, profile, seen=seen, liked_papers=self.liked_papers(profile), top=top
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
) -> RunSummary:
    """Fetch, rank, render and deliver one edition. Call inside ``run_lock``."""
    from .send import Outgoing, deliver, unsubscribe_url

    start = now()
    store = Store(cfg.database_url)
    try:
        edition = edition or edition_for(cfg, start)
        summary = RunSummary(edition=edition)
        run_id = store.start_run(start, edition)
        profiles, errors = load_profiles(cfg.subscribers_path)
        summary.profile_errors = [str(e) for e in errors]
        for e in errors:
            log.error("%s", e)
        if fetch:
            summary.fetch = fetch_all(cfg, store, now, sleep=sleep)
        papers = edition_papers(store, edition, now())
        summary.candidates = len(papers)
        log.info("edition %s: %d candidate papers, %d subscribers", edition, len(papers), len(profiles))
        planner = Planner(cfg, store, edition, papers, now())
        suppressed = store.suppressed()
        sent_already = {d.email.lower() for d in store.deliveries(edition) if d.status == "sent"}

        def outgoing() -> Iterator[Outgoing]:
            for profile in profiles:
                key = profile.email.lower()
                if not profile.active or key in suppressed:
                    summary.skipped.append((profile.email, "unsubscribed"))
                    continue
                if key in sent_already:
                    summary.skipped.append((profile.email, "already sent this edition"))
                    continue
                try:
                    picks = planner.pick(profile)
                    unsub = unsubscribe_url(cfg, profile.email)
                    if not picks:
                        summary.nothing.append(profile.email)
                        if cfg.empty_digest != "note":
                            log.info("%s: nothing above min_score %.2f in %d papers; not sending",
                                     profile.email, profile.min_score, len(papers))
                            continue
                        rendered = planner.renderer.render_empty(profile, edition, unsubscribe_url=unsub)
                    else:
                        rendered = planner.renderer.render(planner.digest(profile, picks),
                                                           unsubscribe_url=unsub)
                        summary.picks.append(Pick(profile.email, len(picks), picks[0].paper.title))
                except DigestError as exc:
                    log.error("%s: %s", profile.path or profile.email, exc)
                    summary.profile_errors.append(f"{profile.path or profile.email}: {exc}")
                    continue
                yield Outgoing(profile, edition, rendered, tuple(s.paper.id for s in picks))

        summary.delivery = deliver(cfg, store, outgoing(), now=now)
        store.finish_run(run_id, now(), summary.as_dict())
        return summary
    finally:
        store.close()
