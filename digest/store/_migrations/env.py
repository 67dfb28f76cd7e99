"""Alembic's entry point: run the revisions on the connection ``_migrate`` hands over.

``render_as_batch``: a generated revision alters tables in batch mode, which SQLite needs
(it copies the table) and PostgreSQL runs as plain ``ALTER TABLE``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

from digest.store import _schema  # noqa: F401  (the tables, registered on SQLModel.metadata)
from digest.store._migrate import configure_options

config = context.config
connection: Any = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    **configure_options(config.attributes.get("autogenerate", False)),
)
with context.begin_transaction():
    context.run_migrations()
