"""Fetching every configured feed into the store: a feed that fails is reported in its
health record and the summary, and the others go on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..clock import Clock
from ..config import Config, Feed
from ..errors import IN_SUMMARY, DigestError
from ..store import Store
from ._common import one_line
from ._http import Fetcher
from ._precedence import precedence_of

log = logging.getLogger(__name__)


@dataclass
class FetchSummary:
    ok: list[tuple[str, int]] = field(default_factory=list)  # (feed, papers parsed)
    not_modified: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (feed, reason)
    new: int = 0
    updated: int = 0


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
                _fetch_one(fetcher, feed, store, now, summary)
            except DigestError as exc:
                _failed(feed.name, url, str(exc), store, now, summary)
            except Exception as exc:
                # A bug (ours or a library's) met in this feed: it costs this feed only.
                # The traceback goes to the debug log (-v); the feed's health says what.
                trace = getattr(exc, "trace", "")  # a crash in the parsing process
                if trace:
                    log.debug("feed %s: unexpected error in the parser:\n%s", feed.name, trace)
                else:
                    log.debug("feed %s: unexpected error", feed.name, exc_info=True)
                reason = (
                    f"unexpected {type(exc).__name__}: {one_line(exc)} "
                    "(a bug: run with -v for the traceback, and please report it)"
                )
                _failed(feed.name, url, reason, store, now, summary)
    return summary


def _fetch_one(
    fetcher: Fetcher, feed: Feed, store: Store, now: Clock, summary: FetchSummary
) -> None:
    result = fetcher.fetch(feed, store.feed_state(feed.name))
    if result.not_modified:
        summary.not_modified.append(feed.name)
        store.record_feed(
            feed.name, feed.url, now(), etag=result.etag, last_modified=result.last_modified
        )
        return
    new, updated = store.upsert_papers(result.papers, now(), precedence_of(feed))
    summary.new += new
    summary.updated += updated
    summary.ok.append((feed.name, len(result.papers)))
    store.record_feed(
        feed.name,
        feed.url,
        now(),
        etag=result.etag,
        last_modified=result.last_modified,
        count=len(result.papers),
    )
    log.info("feed %s: %d papers (%d new)", feed.name, len(result.papers), new)


def _failed(
    name: str, url: str, reason: str, store: Store, now: Clock, summary: FetchSummary
) -> None:
    """Record one feed's failure in its health record and the summary: one line, which
    names the feed once (the report and digest feeds put the name first)."""
    reason = reason.removeprefix(f"feed {name!r}: ")
    log.warning("feed %s failed: %s", name, reason, extra=IN_SUMMARY)
    summary.errors.append((name, reason))
    store.record_feed(name, url, now(), error=reason)
