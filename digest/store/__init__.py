"""The database: papers, editions, feed health, the delivery log, runs and suppressions.

One ``Store`` per process and database URL (SQLite by default, or PostgreSQL); a new
database gets its tables on first use, and one whose schema is behind this release's is
refused until ``upgrade_schema`` (``digest db upgrade``) brings it up to date (``_migrate``,
with the Alembic revisions in ``_migrations``). Every part of the project reads and
writes the database through it and gets the values of ``digest.models`` back: table rows
never leave this package. Each concern is its own module: ``_schema`` (the tables),
``_papers``, ``_editions``, ``_feeds``, ``_deliveries`` (the delivery log and its batched
writer), ``_runs`` (runs and suppressions), ``_votes`` (each subscriber's votes on papers),
``_subscribers`` (the subscriber file each address comes from), ``_dueclaims`` (how the
runs sharing an edition divide its subscribers) and ``_web`` (the web app's: pending
subscriptions, rate limits, spent single-use tokens, what each digest held, erased
addresses).
"""

from __future__ import annotations

from ._deliveries import Claimed, Deliveries, DeliveryWriter, Holder
from ._dueclaims import DueClaims
from ._editions import Editions
from ._feeds import Feeds, FeedStateView
from ._migrate import SchemaStatus, Upgrade, new_revision, schema_status
from ._migrate import upgrade as upgrade_schema
from ._papers import Precedence
from ._runs import Runs, Suppressions
from ._subscribers import SubscriberFiles
from ._votes import DOWN, UP, Votes
from ._web import Pending, SentDigest, WebData

__all__ = [
    "DOWN",
    "UP",
    "Claimed",
    "DeliveryWriter",
    "FeedStateView",
    "Holder",
    "Pending",
    "Precedence",
    "SchemaStatus",
    "SentDigest",
    "Store",
    "Upgrade",
    "new_revision",
    "schema_status",
    "upgrade_schema",
]


class Store(
    Editions, Feeds, Deliveries, Runs, Suppressions, Votes, SubscriberFiles, DueClaims, WebData
):
    """All database access. Create with a SQLAlchemy URL; a new database's tables are
    created on first use, an out-of-date schema raises ``SchemaError``."""
