"""One edition ranked for subscribers, with what the store knows of each of them: the papers
already sent to them (never sent again), their votes, and the papers they liked, disliked or
voted on that are not in this edition (read from the store, for their text)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from ..models import Paper, Profile, Scored
from ._ranker import Ranker
from ._votes import Vote

if TYPE_CHECKING:  # the store is handed in: ranking alone (digest rank, the benchmarks)
    from ..store import Store  # does not import the database layer

_STORED_SIZE = 50_000  # papers read from the store (voted on, liked) kept for the next batch


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
        # Papers not in this edition that subscribers voted on or liked: most are shared by
        # many subscribers, so each is read from the store once per run (bounded).
        self._stored: dict[str, Paper] = {}

    def liked_papers(self, profile: Profile) -> list[Paper]:
        return self._papers_of({profile.email: profile.liked}, local_first=True)[profile.email]

    def pick(self, profile: Profile, top: int | None = None) -> list[Scored]:
        # Every paper sent in another edition is left out, earlier or (after a backfill) later.
        seen = self.store.sent_paper_ids(profile.email, other_than=self.edition)
        return self._rank([profile], {profile.email: seen}, top)[0]

    def pick_many(self, profiles: Sequence[Profile], top: int | None = None) -> list[list[Scored]]:
        """``pick`` for many profiles at once: a few queries and one batched ranking."""
        seen = self.store.sent_papers_of(
            [p.email for p in profiles], other_than=self.edition, among=self.corpus.rows
        )
        return self._rank(profiles, seen, top)

    def votes(self, profiles: Sequence[Profile]) -> dict[str, list[Vote]]:
        """Each profile's votes in the store, oldest first, as (paper, +1 or -1), by the
        profile's email; a vote on a paper the store no longer has is left out."""
        if not self.ranker.weights.vote_model:
            return {}
        stored = self.store.votes_of([p.email for p in profiles])
        if not stored:
            return {}
        ids = {p.email: list(stored.get(p.email.lower(), {})) for p in profiles}
        papers = self._papers_of(ids)
        out: dict[str, list[Vote]] = {}
        for p in profiles:
            values = stored.get(p.email.lower())
            if values:
                out[p.email] = [(x, values[x.id]) for x in papers[p.email]]
        return out

    def _rank(
        self,
        profiles: Sequence[Profile],
        seen: Mapping[str, Collection[str]],
        top: int | None,
    ) -> list[list[Scored]]:
        liked = self._papers_of({p.email: p.liked for p in profiles if p.liked}, local_first=True)
        disliked: dict[str, list[Paper]] = {}
        votes: dict[str, list[Vote]] = {}
        if self.ranker.weights.vote_model:
            # Down votes kept in the file, and the store's votes: the vote model's input.
            disliked = self._papers_of(
                {p.email: p.disliked for p in profiles if p.disliked}, local_first=True
            )
            votes = self.votes(profiles)
        return list(
            self.ranker.rank_many(
                self.corpus,
                profiles,
                seen=seen,
                liked_papers=liked,
                top=top,
                votes=votes or None,
                disliked_papers=disliked or None,
            )
        )

    def _papers_of(
        self, ids: Mapping[str, Sequence[str]], *, local_first: bool = False
    ) -> dict[str, list[Paper]]:
        """The papers of each list of ids, from this edition or else the store (one query
        for all of them); ids the store does not know are left out. In the order given, or
        with ``local_first`` this edition's papers first, then the others."""
        known, stored = self.by_id, self._stored
        wanted = {i for group in ids.values() for i in group}
        missing = sorted(wanted - known.keys() - stored.keys())
        local: dict[str, Paper] = {}
        if missing:
            found = self.store.get_papers(missing)
            local = {p.id: p for p in found}  # for this call, even if the cache is cleared
            if len(stored) + len(found) > _STORED_SIZE:
                stored.clear()
            stored.update(local)
        out: dict[str, list[Paper]] = {}
        for key, group in ids.items():
            here = [known[i] for i in group if i in known] if local_first else []
            elsewhere = []
            for i in group:
                if local_first and i in known:
                    continue
                p = known.get(i) or stored.get(i) or local.get(i)
                if p is not None:
                    elsewhere.append(p)
            out[key] = here + elsewhere
        return out
