"""paper field ranks: which feed each value came from

Revision ID: c5aec5e624dd
Revises: e6099596d994
Create Date: 2026-12-06 05:29:17.239808

``paper.field_ranks`` (JSON, field -> the rank of the feed its value came from) lets a
trusted feed's values stand against feeds trusted less. Rows stored before have none:
their values rank as a feed of the default trust, so they merge as they did before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5aec5e624dd"
down_revision: str | Sequence[str] | None = "e6099596d994"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("paper")}
    if "field_ranks" in have:  # a table made from the models of this release already
        return
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_ranks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.drop_column("field_ranks")
