"""One run: where the stages meet, in the order the README draws them.

Who is due is decided first (``digest.subscribers``: their files, their schedules, the
delivery log); when anyone is, the run goes through the five steps: **fetch** the feeds and
**store** their papers (``digest.sources`` into ``digest.store``), then for each edition due
**rank** its papers for each subscriber (``digest.ranking``) and **render** their digests
(``digest.rendering``), a batch of subscribers at a time, as **send** (``digest.delivery``)
takes them. Per-feed and per-subscriber failures are collected, not fatal.

An edition's papers are those first seen since the previous edition's cut-off (the store);
a weekly digest ranks the papers of the editions of the last seven days.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from filelock import FileLock, Timeout

from . import timing
from .clock import Clock, utcnow
from .config import Config
from .delivery import (
    Claimant,
    DeliverySummary,
    Outgoing,
    deliver,
    gone,
    signed_url,
    unsubscribe_base,
)
from .errors import IN_SUMMARY, ConfigError, DigestError, LockedError, ProfileError
from .models import Digest, Profile, Scored
from .ranking import Picker, Ranker
from .rendering import Renderer
from .store import SentDigest, Store
from .subscribers import Roster, edition_for, iter_profiles, plan, subscribers_missing
from .tally import Tally
from .timing import timed
from .tokens import MANAGE, VIEW, VOTE, Tokens

if TYPE_CHECKING:
    from .sources import FetchSummary

log = logging.getLogger(__name__)


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
    # edition -> subscribers due for it while it has no candidate papers at all: nothing
    # was sent to them and the edition stays open for the next run
    no_papers: dict[date, int] = field(default_factory=dict)
    skipped: Tally[tuple[str, str]] = field(default_factory=Tally)  # (email, why)
    profile_errors: Tally[str] = field(default_factory=Tally)
    delivery: DeliverySummary | None = None
    editions: list[date] = field(default_factory=list)  # the editions that went out this run
    due: int = 0  # subscribers due now and not yet sent their edition
    stopped: bool = False  # asked to stop (SIGTERM) before everything due went out
    taken: int = 0  # subscribers of the roster ranked (and sent, or skipped) so far
    elsewhere: int = 0  # subscribers of the roster another run sharing the edition took
    skipped_by: dict[str, int] = field(default_factory=dict)  # why -> how many
    waiting: Tally[tuple[str, str]] = field(default_factory=lambda: Tally(cap=20))  # when due

    @property
    def left(self) -> int:
        """Subscribers due that a stop left for the next run: never reached, or reached
        but not sent (not counting those deferred, which are listed)."""
        if not self.stopped:
            return 0
        stopped = self.delivery.stopped.total if self.delivery is not None else 0
        return max(self.due - self.taken - self.elsewhere, 0) + stopped

    @property
    def ok(self) -> bool:
        feeds_ok = self.fetch is None or not self.fetch.errors
        delivery_ok = self.delivery is None or self.delivery.ok
        return feeds_ok and delivery_ok and not self.profile_errors and not self.left

    def skip(self, email: str, why: str, when: Callable[[], str] | None = None) -> None:
        """``email`` is not sent this run, for reason ``why``; ``when`` says when they are
        due (asked only for the few subscribers the report lists)."""
        self.skipped.append((email, why))
        self.skipped_by[why] = self.skipped_by.get(why, 0) + 1
        if when is not None:
            if len(self.waiting) < self.waiting.cap:
                self.waiting.append((email, when()))
            else:
                self.waiting.total += 1  # counted, not kept: no need to work out when

    def profile_error(self, error: ProfileError) -> None:
        log.error("%s", error, extra=IN_SUMMARY)
        self.profile_errors.append(str(error))

    def skipped_counts(self) -> dict[str, int]:
        return dict(self.skipped_by)

    def as_dict(self) -> dict[str, object]:
        d = self.delivery or DeliverySummary()
        return {
            "edition": self.edition.isoformat(),
            "candidates": self.candidates,
            "feed_errors": self.fetch.errors if self.fetch else [],
            "new_papers": self.fetch.new if self.fetch else 0,
            "profile_errors": self.profile_errors,
            "nothing": self.nothing.total,
            "no_papers": sum(self.no_papers.values()),
            "sent": d.sent.total,
            "already_sent": d.already_sent.total,
            "elsewhere": d.elsewhere.total,
            "shared": self.elsewhere,
            "given_up": d.given_up.total,
            "deferred": d.deferred,
            "failed": d.failed,
            "deferred_total": d.deferred.total,
            "failed_total": d.failed.total,
            "editions": [e.isoformat() for e in self.editions],
            "due": self.due,
            "skipped": self.skipped_counts(),
            "stopped": self.stopped,
            "left": self.left,
            "ok": self.ok,
        }


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

    Each subscriber gets the edition they are on once they are due (``digest.subscribers``);
    ``edition`` puts everyone on that edition (a re-run or a backfill). When nobody is due,
    nothing is fetched or sent. ``stop`` (set from another thread, say on SIGTERM) ends the
    run between feeds and between messages; what was not sent goes out on the next run.

    Subscribers are streamed: read, planned, ranked, rendered and sent a batch at a time,
    so memory does not grow with the subscriber list.
    """
    timing.reset()
    if not cfg.subscribers_path.is_dir():  # bad config: exit 2, nothing fetched or sent
        raise ConfigError(subscribers_missing(cfg))
    start = now()
    store = Store(cfg.database_url)
    try:
        summary = RunSummary(edition=edition or edition_for(cfg, start))
        run_id = store.start_run(start, summary.edition)
        with Roster() as roster, _steady_gc():
            # Who is due: active, not suppressed, on their hour and day, not yet sent it.
            profiles = iter_profiles(cfg.subscribers_path, summary.profile_error, store)
            plan(cfg, store, profiles, start, edition, summary.skip, roster)
            summary.due = len(roster)
            summary.editions = sorted({ed for ed, _ in roster.groups()})
            if not roster:
                log.info(
                    "nobody is due at %s; nothing fetched or sent (%s)",
                    start.isoformat(timespec="minutes"),
                    _counts(summary.skipped_counts()),
                )
            elif not _stopping(stop, summary):
                if fetch:  # 1. fetch the feeds, 2. store their papers
                    # Imported here: the HTTP client and the feed parsers (a sixth of the
                    # start-up and some 15 MB) are not needed by a run that does not fetch.
                    from .sources import fetch_all

                    with timed("fetch"):
                        summary.fetch = fetch_all(cfg, store, now, sleep=sleep, stop=stop)
                if not _stopping(stop, summary):
                    # 3. rank and 4. render each due subscriber's digest, lazily ...
                    share = _Share(store, now, summary)
                    digests = _digests(cfg, store, roster, now, summary, stop, share)
                    # 5. ... as delivery sends them. Each subscriber is in the roster once
                    # (one file per address, one edition each): no record of who came.
                    try:
                        summary.delivery = deliver(
                            cfg, store, digests, now=now, stop=stop, unique=True
                        )
                    finally:
                        share.close()
                    if stop is not None and stop.is_set():
                        summary.stopped = True
                    _stopping(stop, summary)  # deliver() may have stopped before asking for more
        store.finish_run(run_id, now(), summary.as_dict())
        log.info("time per stage (CPU): %s", timing.summary_line())
        return summary
    finally:
        store.close()


def _digests(
    cfg: Config,
    store: Store,
    roster: Roster,
    now: Clock,
    summary: RunSummary,
    stop: threading.Event | None,
    share: _Share | None = None,
) -> Iterator[Outgoing]:
    """Rank and render each due subscriber's digest, one edition (or week) at a time, a
    batch of subscribers at a time: those of each batch this run takes (``_Share``), then
    those that a run sharing the edition took and left when it died."""
    base = unsubscribe_base(cfg)
    tokens = cfg.link_tokens() if base or cfg.web.base_url else None
    web = cfg.web.base_url if tokens else ""  # links to the web app's pages
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
            papers = store.week_papers(edition, at) if weekly else store.edition_papers(edition, at)
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
            # Nothing to rank: nobody is sent anything (not even an "empty" note), and the
            # edition's window stays open (the store keeps no cut-off for it), so the first
            # run that has papers for it sends it. Not a threshold matter: nobody's is met.
            summary.no_papers[edition] = summary.no_papers.get(edition, 0) + roster.count(key)
            _explain_empty(store, edition, roster.count(key), summary.fetch)
            continue
        with timed("prepare"):  # index and embed the papers, compile their cards
            ranker = ranker or Ranker(cfg.ranking)
            picker = Picker(ranker, store, edition, papers, at)
            renderer = renderer or Renderer(cfg)
            renderer.begin_edition(papers)
        gc.freeze()  # the edition's index, embeddings and cards: here for the run
        batches = roster.members(key)
        if share is not None:
            # Claimed in parts small enough for every run to get some (a twentieth of
            # the group, 10 to 100 subscribers); ranked five parts at a time in a large
            # group (batches of 500), one at a time in a small one.
            part = max(10, min(100, roster.count(key) // 20))
            rank_batch = 500 if part == 100 else part
            batches = itertools.chain(
                share.take(edition, roster.members(key, part), rank_batch=rank_batch),
                share.take(edition, roster.members(key, part), leftovers=True),
            )
        for batch in batches:
            if _stopping(stop, summary):
                return
            chosen = _pick(picker, batch, summary)
            held: list[SentDigest] = []  # what each digest holds, for the web app's pages
            try:
                for profile, picks in zip(batch, chosen, strict=True):
                    if _stopping(stop, summary):
                        return
                    summary.taken += 1
                    if picks is None:
                        continue
                    unsub = signed_url(base, tokens, profile.email) if base and tokens else ""
                    manage = view = vote = ""
                    if web and tokens:
                        manage = web_link(web, "/preferences", tokens, MANAGE, profile.email)
                        if picks:
                            view = web_link(web, "/view", tokens, VIEW, profile.email, edition)
                            vote = web_link(web, "/vote", tokens, VOTE, profile.email, edition)
                    try:
                        with timed("render"):
                            if not picks:
                                summary.nothing.append(profile.email)
                                if cfg.empty_digest != "note":
                                    log.info(
                                        "%s: nothing above min_score %.2f and the relevance "
                                        "floor %.2f in %d papers; not sending "
                                        '(empty_digest = "skip")',
                                        profile.email,
                                        profile.min_score,
                                        cfg.ranking.relevance_floor,
                                        len(papers),
                                    )
                                    continue
                                if renderer is None:
                                    renderer = Renderer(cfg)
                                rendered = renderer.render_empty(
                                    profile, edition, unsubscribe_url=unsub, manage_url=manage
                                )
                            else:
                                assert renderer is not None
                                rendered = renderer.render(
                                    Digest(profile, edition, tuple(picks)),
                                    unsubscribe_url=unsub,
                                    manage_url=manage,
                                    view_url=view,
                                    vote_url=vote,
                                )
                                if 0 <= rendered.papers < len(picks):  # dropped to fit
                                    picks = picks[: rendered.papers]
                                if web and tokens:  # as sent, for the web app's pages
                                    held.append(SentDigest(profile.email, edition, _held(picks)))
                                summary.picks.append(
                                    Pick(profile.email, len(picks), picks[0].paper.title)
                                )
                    except DigestError as exc:
                        log.error("%s: %s", profile.path or profile.email, exc, extra=IN_SUMMARY)
                        summary.profile_errors.append(f"{profile.path or profile.email}: {exc}")
                        continue
                    yield Outgoing(profile, edition, rendered, tuple(s.paper.id for s in picks))
            finally:
                if held:
                    with timed("record"):
                        store.record_digests(held, at)


def web_link(
    web: str, path: str, tokens: Tokens, purpose: str, email: str, edition: date | None = None
) -> str:
    """A signed link to one of the web app's pages for ``email`` (and ``edition``)."""
    scope = edition.isoformat() if edition else ""
    token = tokens.make(purpose, email, scope=scope)
    query = f"e={quote(email, safe='@')}" + (f"&ed={scope}" if scope else "")
    return f"{web}{path}?{query}&token={token}"


def _held(picks: list[Scored]) -> tuple[tuple[str, float, tuple[str, ...]], ...]:
    return tuple((s.paper.id, float(s.score), tuple(s.reasons)) for s in picks)


class _Share:
    """This run's part of the subscribers due: any number of runs (``digest run --workers
    N``, or on several machines) may share an edition, each ranking, rendering and sending
    the batches it takes in the database (``Store.claim_due``). The delivery log's claim
    still decides, per message, who sends it; this only keeps the runs from doing the same
    work twice."""

    LEASE = timedelta(minutes=15)  # then another run may take what this one has not sent

    def __init__(self, store: Store, now: Clock, summary: RunSummary) -> None:
        self.store = store
        self.now = now
        self.summary = summary
        self.claimant = Claimant()

    def take(
        self,
        edition: date,
        batches: Iterable[list[Profile]],
        *,
        leftovers: bool = False,
        rank_batch: int = 1,
    ) -> Iterator[list[Profile]]:
        """Of each batch, the subscribers this run now holds. With ``leftovers`` (a second
        pass), only those another run took and left: its process is gone (this machine)
        or its claim lapsed; and of those, the ones not sent meanwhile. What it holds is
        handed on in batches of at least ``rank_batch`` (ranked together)."""
        mine: list[Profile] = []
        for batch in batches:
            emails = [p.email for p in batch]
            at = self.now()
            with timed("share", 0):
                held = self.store.claim_due(
                    edition,
                    emails,
                    self.claimant.owner,
                    at,
                    at + self.LEASE,
                    gone=gone,
                    again=not leftovers,
                )
                if leftovers and held:
                    sent = self.store.delivery_statuses(edition, sorted(held))
                    held -= {e for e, st in sent.items() if st == "sent"}
            if not leftovers:
                self.summary.elsewhere += len(batch) - len(held)
            elif held:
                self.summary.elsewhere -= len(held)
                log.info(
                    "edition %s: %d subscriber(s) left by a run that ended", edition, len(held)
                )
            mine.extend(p for p in batch if p.email in held)
            if len(mine) >= rank_batch:
                yield mine
                mine = []
        if mine:
            yield mine

    def close(self) -> None:
        self.claimant.close()


def _pick(picker: Picker, batch: list[Profile], summary: RunSummary) -> list[list[Scored] | None]:
    """Each profile's picks (None for a profile that failed), ranked as one batch; when
    the batch fails, one at a time, so one bad profile costs only its own digest."""
    try:
        with timed("rank", len(batch)):
            ranked: list[list[Scored] | None] = list(picker.pick_many(batch))
        return ranked
    except DigestError as exc:
        log.warning(
            "ranking %d subscribers together failed (%s); ranking one by one", len(batch), exc
        )
    out: list[list[Scored] | None] = []
    for profile in batch:
        try:
            with timed("rank"):
                out.append(picker.pick(profile))
        except DigestError as exc:
            log.error("%s: %s", profile.path or profile.email, exc, extra=IN_SUMMARY)
            summary.profile_errors.append(f"{profile.path or profile.email}: {exc}")
            out.append(None)
    return out


@contextmanager
def _steady_gc() -> Iterator[None]:
    """The cyclic garbage collector, told to skip what is alive when a run starts and
    each edition's prepared state (modules, the model, indexes, cards: a million objects
    it would otherwise walk again in every full collection, some 8% of a run's time), and
    to run less often: the run makes few reference cycles (about one object a digest),
    while each young collection walks the batch being ranked and sent (at a threshold of
    10,000 objects, 4% of a run's CPU; at 200,000, under 1%). Undone when the run ends."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 200_000), *threshold[1:])
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


def _explain_empty(store: Store, edition: date, due: int, fetched: FetchSummary | None) -> None:
    later = [day for day, _ in store.editions() if day > edition]
    if later:
        log.info(
            "edition %s has no papers: it was first run after edition %s, which already "
            "carried them; nothing to send to its %d subscriber(s)",
            edition,
            later[0],
            due,
        )
        return
    why = "no paper first seen since the previous edition"
    if fetched is not None and fetched.errors and not (fetched.ok or fetched.not_modified):
        why += f" (every feed failed: {len(fetched.errors)})"
    elif fetched is not None and fetched.errors:
        why += f" ({len(fetched.errors)} feed(s) failed)"
    log.info(
        "edition %s: %s; nothing sent, the edition stays open: its %d subscriber(s) get it "
        "from the first run that has papers for it",
        edition,
        why,
        due,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items())) or "no subscribers"
