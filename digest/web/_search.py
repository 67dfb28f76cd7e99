"""Search over every stored paper: the digests' ranker over all of them, the query as the
profile. Indexing a year of papers takes minutes, so the index is built in a thread of its
own and replaced whole when papers were added (looked at most every ``REFRESH``): a search
never waits for a rebuild, it ranks with the index it has. Only the very first index is
waited for (it is started with the app, so it is usually ready when someone searches)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from ..config import Ranking
from ..models import Profile, Scored
from ..ranking import Picker, Ranker
from ..store import Store

log = logging.getLogger(__name__)

REFRESH = timedelta(minutes=10)  # how often the paper count is looked at for a rebuild


class SearchIndex:
    def __init__(
        self, weights: Ranking, store: Store, now: Callable[[], datetime], refresh: timedelta
    ) -> None:
        self.weights = weights
        self.store = store
        self.now = now
        self.refresh = refresh
        self._state = threading.Lock()  # guards the fields below
        self._rank = threading.Lock()  # the index's ranker is used by one search at a time
        self._current: tuple[int, Picker] | None = None  # (papers indexed, picker)
        self._thread: threading.Thread | None = None
        self._checked: datetime | None = None

    def start(self) -> None:
        """Start building the first index (without waiting for it)."""
        with self._state:
            if self._current is None and self._thread is None:
                self._build_later()

    def search(self, query: str, top: int) -> list[Scored]:
        picker = self._picker()
        if picker is None:
            return []
        profile = Profile(email="search@invalid.example", interests=query)
        with self._rank:
            return picker.ranker.rank(picker.corpus, profile, seen=set(), top=top)

    def _picker(self) -> Picker | None:
        now = self.now()
        with self._state:
            current, thread = self._current, self._thread
            if current is None and thread is None:
                thread = self._build_later()
            elif current is not None and thread is None:
                due = self._checked is None or now - self._checked >= self.refresh
                if due:
                    self._checked = now
                    if self.store.count_papers() != current[0]:
                        self._build_later()  # meanwhile, searches use this one
        if current is None and thread is not None:
            thread.join()  # the first index: nothing to search without it
            with self._state:
                current = self._current
        return current[1] if current is not None else None

    def _build_later(self) -> threading.Thread:
        thread = threading.Thread(target=self._build, name="search-index", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _build(self) -> None:
        try:
            now = self.now()
            count = self.store.count_papers()
            papers = self.store.papers_seen_between(None, now)
            picker = None
            if papers:
                # The digests' ranker, without smoothing each paper's relevance over its
                # nearest papers: finding every paper's neighbours costs the square of
                # the papers (an edition's thousand: nothing; a year's 200,000: hours).
                weights = self.weights.model_copy(update={"smoothing": 0.0})
                picker = Picker(Ranker(weights), self.store, now.date(), papers, now)
                log.info("search index: %d papers", len(papers))
            with self._state:
                if picker is not None:
                    self._current = (count, picker)
                self._checked = now
        except Exception:  # logged for the operator; the next search tries again
            log.exception("building the search index failed")
        finally:
            with self._state:
                self._thread = None
