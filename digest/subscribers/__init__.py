"""Subscribers: the files in ``subscribers/`` (one TOML file per person, the truth an admin
edits by hand) read into ``Profile`` values, written back with their comments kept, and who
is due for which edition at a given moment.

``_files`` reads and validates a file (and its BibTeX ``liked_file``, ``_bibtex``);
``_manage`` adds, removes and lists subscribers (tomlkit, the suppression list in the
store); ``_due`` says which edition each subscriber is on and whether it is due;
``_roster`` lists a run's due subscribers by edition, out of memory.
"""

from __future__ import annotations

from ._due import (
    NOT_DUE,
    NOT_THEIR_DAY,
    describe_timing,
    due,
    edition_for,
    never_due,
    subscriber_edition,
    when_due,
    why_not_due,
)
from ._files import (
    WEEKDAYS,
    check_email,
    find_profile,
    iter_profiles,
    load_profile,
    load_profiles,
    profile_files,
    subscribers_missing,
)
from ._manage import Subscribed, SubscriberRow, subscribe, subscriber_rows, unsubscribe
from ._roster import ALREADY_SENT, BATCH, UNSUBSCRIBED, Roster, plan

__all__ = [
    "ALREADY_SENT",
    "BATCH",
    "NOT_DUE",
    "NOT_THEIR_DAY",
    "UNSUBSCRIBED",
    "WEEKDAYS",
    "Roster",
    "Subscribed",
    "SubscriberRow",
    "check_email",
    "describe_timing",
    "due",
    "edition_for",
    "find_profile",
    "iter_profiles",
    "load_profile",
    "load_profiles",
    "never_due",
    "plan",
    "profile_files",
    "subscribe",
    "subscriber_edition",
    "subscriber_rows",
    "subscribers_missing",
    "unsubscribe",
    "when_due",
    "why_not_due",
]
