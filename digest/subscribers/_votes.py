"""A subscriber's votes, wherever they are kept: in the database (the web app's links, ``digest
vote``) and in their file (``liked`` / ``disliked`` ids, the papers of ``liked_file`` /
``disliked_file``). The ranking learns from all of them (``digest.ranking``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models import Profile
from ..store import Store

UP, DOWN = 1, -1


@dataclass(frozen=True)
class SubscriberVote:
    """One vote as ``digest subscribers --show`` lists it."""

    value: int  # +1 up, -1 down
    paper_id: str  # "" for a paper of a BibTeX file
    title: str  # "" for a paper the database does not have
    where: str  # "database", "liked", "disliked", "liked_file" or "disliked_file"
    at: datetime | None = None  # when it was cast (database votes)


def subscriber_votes(profile: Profile, store: Store) -> list[SubscriberVote]:
    """Every vote of ``profile``: the file's first (ids, then BibTeX papers), then the
    database's, oldest first. A paper voted twice is listed twice; the latest counts."""
    stored = store.votes(profile.email)
    ids = [*profile.liked, *profile.disliked, *stored]
    titles = {p.id: p.title for p in store.get_papers(list(dict.fromkeys(ids)))} if ids else {}
    out = [SubscriberVote(UP, i, titles.get(i, ""), "liked") for i in profile.liked]
    out += [SubscriberVote(DOWN, i, titles.get(i, ""), "disliked") for i in profile.disliked]
    out += [SubscriberVote(UP, "", t, "liked_file") for t, _ in profile.liked_texts]
    out += [SubscriberVote(DOWN, "", t, "disliked_file") for t, _ in profile.disliked_texts]
    out += [
        SubscriberVote(v, i, titles.get(i, ""), "database", at) for i, (v, at) in stored.items()
    ]
    return out
