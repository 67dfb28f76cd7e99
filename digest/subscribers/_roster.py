"""The roster of a run: who gets which edition now (active, not suppressed, due, not yet
sent it), kept in a temporary file rather than in memory, so a run over 100,000 subscribers
reads their files once and holds a batch at a time."""

from __future__ import annotations

import logging
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from datetime import date, datetime
from functools import partial
from itertools import islice
from pathlib import Path
from typing import IO, Any

from ..config import Config
from ..errors import ConfigError
from ..models import Keyword, Profile
from ..store import Store
from ..timing import timed
from ..tokens import ERASED
from ._due import subscriber_edition, when_due, why_not_due

log = logging.getLogger(__name__)

ALREADY_SENT = "already sent this edition"
UNSUBSCRIBED = "unsubscribed"
ERASED_ADDRESS = "erased at their request"
BATCH = 500  # subscribers loaded, planned, ranked and rendered together


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
_KEYWORDS = _FIELDS.index("keywords")
_PATHS = tuple(_FIELDS.index(n) for n in ("path", "liked_file", "disliked_file"))


def _flat(profile: Profile) -> tuple[Any, ...]:
    """A profile as plain values (keywords as pairs, paths as text): half the cost of
    pickling the objects, both ways."""
    values = [getattr(profile, name) for name in _FIELDS]
    values[_KEYWORDS] = tuple((k.term, k.weight) for k in profile.keywords)
    for i in _PATHS:
        values[i] = None if values[i] is None else str(values[i])
    return tuple(values)


def _profile(values: tuple[Any, ...]) -> Profile:
    flat = list(values)
    flat[_KEYWORDS] = tuple(Keyword(term, weight) for term, weight in flat[_KEYWORDS])
    for i in _PATHS:
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


def erased_check(cfg: Config, store: Store) -> Callable[[str], bool] | None:
    """Whether an address was erased at its owner's request (the web app keeps a keyed hash
    of it, never the address): such an address is never mailed again, even when a file
    holding it comes back. None when no address was erased. The hashes are made with the
    secret that signs links: without it, ConfigError (better no run than mail to them)."""
    hashes = store.erased_hashes()
    if not hashes:
        return None
    try:
        tokens = cfg.link_tokens()
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; it also tells the {len(hashes)} erased address(es) the database keeps "
            "(as keyed hashes) from the others, and nobody is sent anything without it"
        ) from exc
    return lambda email: tokens.make(ERASED, email) in hashes


def plan(
    cfg: Config,
    store: Store,
    profiles: Iterable[Profile],
    now: datetime,
    edition: date | None,
    skip: Callable[..., None],
    roster: Roster,
) -> Roster:
    """Who gets which edition now: active, not suppressed, due, and not yet sent it.
    ``profiles`` is consumed in batches; the subscribers due go to ``roster``, and each of
    the others to ``skip(email, why)`` (and, for those not due yet, a function that says
    when they are: ``skip(email, why, when)``)."""
    suppressed = store.suppressed()
    erased = erased_check(cfg, store)
    for batch in _batches(profiles, BATCH):
        with timed("plan", len(batch)):
            groups: dict[Key, list[Profile]] = {}
            for profile in batch:
                if not profile.active or profile.email.lower() in suppressed:
                    skip(profile.email, UNSUBSCRIBED)
                    continue
                if erased is not None and erased(profile.email):
                    skip(profile.email, ERASED_ADDRESS)
                    continue
                ed = edition or subscriber_edition(cfg, profile, now)
                why = why_not_due(profile, now, ed)
                if why is not None:
                    log.debug("%s: %s for edition %s", profile.email, why, ed)
                    skip(profile.email, why, partial(when_due, profile, now))
                    continue
                groups.setdefault((ed, profile.frequency), []).append(profile)
            for key in sorted(groups):
                members = groups[key]
                status = store.delivery_statuses(key[0], [m.email for m in members])
                keep = []
                for m in members:
                    if status.get(m.email) == "sent":
                        skip(m.email, ALREADY_SENT)
                    else:
                        keep.append(m)
                roster.add(key, keep)
    return roster
