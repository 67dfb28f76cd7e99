"""The tables: every table the project had when it started keeping schema revisions.

Revision ID: 0001
Revises:
Create Date: 2026-12-06

A database made before then (no ``alembic_version`` table) already has some of these
tables, as that release made them; this revision creates only the ones it lacks (``vote``
and ``subscriber_file`` for a database made by the release before them), gives an older
``delivery`` table the claim columns it lacks, and leaves every row as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "paper" not in have:
        op.create_table(
            "paper",
            sa.Column("id", sa.String(), nullable=False),
            sa.Column("title", sa.String(), nullable=False),
            sa.Column("abstract", sa.String(), nullable=False),
            sa.Column("authors", sa.JSON(), nullable=True),
            sa.Column("url", sa.String(), nullable=False),
            sa.Column("pdf_url", sa.String(), nullable=True),
            sa.Column("code_url", sa.String(), nullable=True),
            sa.Column("hf_url", sa.String(), nullable=True),
            sa.Column("project_url", sa.String(), nullable=True),
            sa.Column("thumbnail", sa.String(), nullable=True),
            sa.Column("categories", sa.JSON(), nullable=True),
            sa.Column("published", sa.DateTime(timezone=True), nullable=True),
            sa.Column("sources", sa.JSON(), nullable=True),
            sa.Column("upvotes", sa.Integer(), nullable=True),
            sa.Column("comments", sa.Integer(), nullable=True),
            sa.Column("github_stars", sa.Integer(), nullable=True),
            sa.Column("ai_summary", sa.String(), nullable=True),
            sa.Column("ai_keywords", sa.JSON(), nullable=True),
            sa.Column("announce_type", sa.String(), nullable=True),
            sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_paper_first_seen", "paper", ["first_seen"])
    if "feed_state" not in have:
        op.create_table(
            "feed_state",
            sa.Column("name", sa.String(), nullable=False),
            sa.Column("url", sa.String(), nullable=False),
            sa.Column("etag", sa.String(), nullable=True),
            sa.Column("last_modified", sa.String(), nullable=True),
            sa.Column("last_attempt", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.String(), nullable=True),
            sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("last_count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "edition" not in have:
        op.create_table(
            "edition",
            sa.Column("edition", sa.Date(), nullable=False),
            sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("edition"),
        )
    if "delivery" not in have:
        op.create_table(
            "delivery",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("edition", sa.Date(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("message_id", sa.String(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("papers", sa.Integer(), nullable=False),
            sa.Column("reply", sa.String(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            *_claim_columns(),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email", "edition"),
        )
        op.create_index("ix_delivery_edition", "delivery", ["edition"])
        op.create_index("ix_delivery_email", "delivery", ["email"])
    else:  # a delivery log made before claims: their columns, its rows kept
        have_columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("delivery")}
        missing = [c for c in _claim_columns() if c.name not in have_columns]
        if missing:
            with op.batch_alter_table("delivery") as batch:
                for column in missing:
                    batch.add_column(column)
    if "sent_paper" not in have:
        op.create_table(
            "sent_paper",
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("paper_id", sa.String(), nullable=False),
            sa.Column("edition", sa.Date(), nullable=False),
            sa.PrimaryKeyConstraint("email", "paper_id"),
            sqlite_with_rowid=False,
        )
    if "run" not in have:
        op.create_table(
            "run",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("started", sa.DateTime(timezone=True), nullable=False),
            sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
            sa.Column("edition", sa.Date(), nullable=True),
            sa.Column("summary", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "suppression" not in have:
        op.create_table(
            "suppression",
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("reason", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("email"),
        )
    if "vote" not in have:
        op.create_table(
            "vote",
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("paper_id", sa.String(), nullable=False),
            sa.Column("value", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("source", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("email", "paper_id"),
        )

    if "subscriber_file" not in have:
        op.create_table(
            "subscriber_file",
            sa.Column("email", sa.String(), nullable=False),
            sa.Column("file", sa.String(), nullable=False),
            sa.PrimaryKeyConstraint("email"),
        )
        op.create_index("ix_subscriber_file_file", "subscriber_file", ["file"])


def _claim_columns() -> list[sa.Column[object]]:
    """The delivery log's claim columns, with defaults for the rows of an older log."""
    return [
        sa.Column("claimed_by", sa.String(), nullable=False, server_default=""),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("in_flight", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("unknown_outcomes", sa.Integer(), nullable=False, server_default="0"),
    ]


def downgrade() -> None:
    op.drop_index("ix_subscriber_file_file", table_name="subscriber_file")
    for name in (
        "subscriber_file",
        "vote",
        "suppression",
        "run",
        "sent_paper",
        "delivery",
        "edition",
    ):
        op.drop_table(name)
    op.drop_table("feed_state")
    op.drop_index("ix_paper_first_seen", table_name="paper")
    op.drop_table("paper")
