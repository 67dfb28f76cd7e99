"""Subscribers: the files in ``subscribers/`` (one TOML file per person, the truth an admin
edits by hand) read into ``Profile`` values, written back with their comments kept, and who
is due for which edition at a given moment.

``_files`` reads and validates a file (and its BibTeX ``liked_file``, ``_bibtex``);
``_manage`` adds, removes and lists subscribers (tomlkit, the suppression list in the
store); ``_edit`` changes one subscriber's file from the web (versioned, comments kept) or
deletes it on request; ``_due`` says which edition each subscriber is on and whether it is due;
``_roster`` lists a run's due subscribers by edition, out of memory; ``_votes`` lists a
subscriber's votes, from the database and from their file.
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
from ._edit import (
    EDITABLE,
    ChangedOnDisk,
    SubscriberFile,
    delete_subscriber_file,
    read_subscriber,
    update_subscriber,
)
from ._files import (
    WEEKDAYS,
    check_email,
    find_profile,
    iter_profiles,
    load_profile,
    load_profiles,
    profile_files,
    profile_of,
    subscribers_missing,
)
from ._manage import (
    Subscribed,
    SubscriberRow,
    forget_erasure,
    normalize_email,
    subscribe,
    subscriber_rows,
    unsubscribe,
)
from ._roster import ALREADY_SENT, BATCH, ERASED_ADDRESS, UNSUBSCRIBED, Roster, erased_check, plan
from ._votes import SubscriberVote, subscriber_votes

__all__ = [
    "ALREADY_SENT",
    "BATCH",
    "EDITABLE",
    "ERASED_ADDRESS",
    "NOT_DUE",
    "NOT_THEIR_DAY",
    "UNSUBSCRIBED",
    "WEEKDAYS",
    "ChangedOnDisk",
    "Roster",
    "Subscribed",
    "SubscriberFile",
    "SubscriberRow",
    "SubscriberVote",
    "check_email",
    "delete_subscriber_file",
    "describe_timing",
    "due",
    "edition_for",
    "erased_check",
    "find_profile",
    "forget_erasure",
    "iter_profiles",
    "load_profile",
    "load_profiles",
    "never_due",
    "normalize_email",
    "plan",
    "profile_files",
    "profile_of",
    "read_subscriber",
    "subscribe",
    "subscriber_edition",
    "subscriber_rows",
    "subscriber_votes",
    "subscribers_missing",
    "unsubscribe",
    "update_subscriber",
    "when_due",
    "why_not_due",
]
