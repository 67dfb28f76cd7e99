"""The tables. Table classes never leave the store package: the stages see ``Paper``,
``Delivery`` and the other values of ``digest.models``."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class PaperRow(SQLModel, table=True):
    __tablename__ = "paper"
    id: str = Field(primary_key=True)
    title: str
    abstract: str = ""
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    url: str = ""
    pdf_url: str | None = None
    code_url: str | None = None
    hf_url: str | None = None
    project_url: str | None = None
    thumbnail: str | None = None
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    published: datetime | None = None
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    announce_type: str | None = None
    first_seen: datetime = Field(index=True)
    last_seen: datetime
    # field -> rank of the feed its value came from (see _papers.Precedence); null in rows
    # stored before revision 0002, whose values rank as a feed of the default trust
    field_ranks: dict[str, int] | None = Field(default=None, sa_column=Column(JSON))


class FeedState(SQLModel, table=True):
    __tablename__ = "feed_state"
    name: str = Field(primary_key=True)
    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0
    last_count: int = 0


class EditionRow(SQLModel, table=True):
    __tablename__ = "edition"
    edition: date = Field(primary_key=True)
    cutoff: datetime
    created: datetime


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("email", "edition"),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True)
    edition: date = Field(index=True)
    status: str = "pending"
    message_id: str = ""
    attempts: int = 0  # tries, each logged before it starts
    papers: int = 0
    reply: str = ""
    updated_at: datetime
    # While "sending": the claim of the run sending it (see ``DeliveryWriter.claim``), held
    # until ``lease_until`` and renewed while that run lives.
    claimed_by: str = ""
    lease_until: datetime | None = None
    in_flight: bool = False  # a try has started and its outcome is not logged yet
    unknown_outcomes: int = 0  # tries the server may have taken without saying so


class SentPaper(SQLModel, table=True):
    __tablename__ = "sent_paper"
    # Rows kept in their key's order, with no separate index: every message sent adds
    # one row per paper in its own transaction, and one B-tree to change instead of two
    # is a fifth of the delivery log's cost per message. (A database made before keeps
    # its table as it was: same rows, same queries.)
    __table_args__ = {"sqlite_with_rowid": False}
    email: str = Field(primary_key=True)
    paper_id: str = Field(primary_key=True)
    edition: date


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    started: datetime
    finished: datetime | None = None
    edition: date | None = None
    summary: str = "{}"


class Suppression(SQLModel, table=True):
    __tablename__ = "suppression"
    email: str = Field(primary_key=True)
    at: datetime
    reason: str = ""


class VoteRow(SQLModel, table=True):
    __tablename__ = "vote"
    # One vote per (subscriber, paper): the latest wins. Addresses are lower-cased, as in
    # the suppression list, so a vote survives a change of case in the subscriber's file.
    email: str = Field(primary_key=True)
    paper_id: str = Field(primary_key=True)
    value: int  # +1 "more like this", -1 "less like this"
    at: datetime
    source: str = ""  # where it was cast: "web", "cli", ...


class SubscriberFileRow(SQLModel, table=True):
    __tablename__ = "subscriber_file"
    # The subscriber file each address was last read from (its name in subscribers_dir),
    # so that when a second file claims an address, the one already known keeps it.
    email: str = Field(primary_key=True)  # lower-cased
    file: str = Field(index=True)  # read a batch of files at a time, by name range


class DueClaimRow(SQLModel, table=True):
    __tablename__ = "due_claim"
    # Which run ranks, renders and sends a due subscriber's edition: the runs sharing an
    # edition (``digest run --workers N``, or runs on several machines) each take batches
    # of the subscribers due, so that each digest is made once. It only divides the work:
    # the delivery log's claim still decides, per message, who sends it.
    edition: date = Field(primary_key=True)
    email: str = Field(primary_key=True)
    owner: str  # the run (as delivery claims name it: host, machine, process, start)
    until: datetime  # after this, another run may take it (its run may be gone)


class PendingRow(SQLModel, table=True):
    __tablename__ = "pending_subscription"
    # A subscription waiting for its address to confirm (double opt-in): nothing is written
    # to subscribers/ before. ``id`` is random and goes into the confirm link with its token.
    id: str = Field(primary_key=True)
    email: str = Field(index=True)  # lower-cased
    data: str = "{}"  # the form, as JSON: name, interests, keywords, timing...
    created: datetime
    expires: datetime = Field(index=True)


class RateRow(SQLModel, table=True):
    __tablename__ = "rate_limit"
    # One counter per (what, who) key, e.g. "subscribe:ip:203.0.113.9", in a fixed window.
    key: str = Field(primary_key=True)
    window_start: datetime
    count: int = 0


class UsedTokenRow(SQLModel, table=True):
    __tablename__ = "used_token"
    # Single-use tokens already spent, by the SHA-256 of the token (never the token).
    digest: str = Field(primary_key=True)
    at: datetime = Field(index=True)


class DigestContentRow(SQLModel, table=True):
    __tablename__ = "digest_content"
    # What one digest held, in order, with each paper's score and reasons: "view in
    # browser" shows it as sent, and votes are accepted on its papers.
    email: str = Field(primary_key=True)  # lower-cased
    edition: date = Field(primary_key=True)
    papers: str = "[]"  # JSON: [[paper id, score, [reasons...]], ...]
    at: datetime


class ErasedRow(SQLModel, table=True):
    __tablename__ = "erased"
    # Someone who asked to be forgotten: only a keyed hash of their address stays, so a
    # file or a sign-up naming it again is noticed and never mailed by mistake.
    hash: str = Field(primary_key=True)
    at: datetime


class RelayPaceRow(SQLModel, table=True):
    __tablename__ = "relay_pace"
    # A relay's next free sending slot, shared by every run sending through it, so that
    # ``[smtp] rate_per_second`` holds for all of them together (``Store.reserve_slots``).
    relay: str = Field(primary_key=True)  # host:port:user
    next_at: datetime
