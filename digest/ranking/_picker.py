"""One edition ranked for subscribers, with what the store knows of each of them: the papers
already sent to them (never sent again) and the liked papers not in this edition."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from ..models import Paper, Profile, Scored
from ..store import Store
from ._ranker import Ranker


class Picker:
    """Picks each subscriber's papers from one edition's; the papers are indexed and embedded
    once (``Ranker.prepare``). ``ranker`` may be shared by the pickers of one run (daily and
    weekly editions): papers embedded for one are reused by the next."""

    def __init__(
        self,
        ranker: Ranker,
        store: Store,
        edition: date,
        papers: Sequence[Paper],
        now: datetime,
    ) -> None:
        self.ranker = ranker
        self.store = store
        self.edition = edition
        self.now = now
        self.corpus = ranker.prepare(papers, now)
        self.by_id = {p.id: p for p in papers}

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
