"""Which subscriber file each address comes from, so that a second file claiming an
address is the one reported, not the file the address has been read from all along."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, or_, select, text

from ._base import Base, chunks
from ._schema import SubscriberFileRow

_TABLE = SubscriberFileRow.__table__  # type: ignore[attr-defined]
# Compiled once: a run asks this for every batch of files (a range of names).
_BETWEEN = select(_TABLE.c.file, _TABLE.c.email).where(
    _TABLE.c.file >= bindparam("lo"), _TABLE.c.file <= bindparam("hi")
)

# PostgreSQL: what was known of these addresses and files, then the pairs, in one
# statement each, whatever their number; a row another run wrote meanwhile is replaced.
_FORGET = text(
    "DELETE FROM subscriber_file WHERE email = ANY(CAST(:emails AS text[])) "
    "OR file = ANY(CAST(:files AS text[]))"
)
_LEARN = text(
    "INSERT INTO subscriber_file (email, file) "
    "SELECT * FROM unnest(CAST(:emails AS text[]), CAST(:files AS text[])) "
    "ON CONFLICT (email) DO UPDATE SET file = excluded.file"
)


class SubscriberFiles(Base):
    def subscriber_files_between(self, first: str, last: str) -> dict[str, str]:
        """File name -> the lower-cased address last read from it, for the files whose
        names sort from ``first`` to ``last``."""
        with self.engine.connect() as conn:
            return dict(conn.execute(_BETWEEN, {"lo": first, "hi": last}).all())

    def subscriber_files(self, emails: Sequence[str]) -> dict[str, str]:
        """Lower-cased address -> the file name it was last read from, for those known."""
        out: dict[str, str] = {}
        keys = sorted({e.lower() for e in emails})
        with self.engine.connect() as conn:
            for part in chunks(keys, 500):
                q = select(_TABLE.c.email, _TABLE.c.file).where(_TABLE.c.email.in_(part))
                out.update((email, file) for email, file in conn.execute(q))
        return out

    def remember_subscriber_files(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Record (address, file name) pairs: each address comes from that file, and that
        file holds that address (what was known of either is replaced)."""
        rows = {email.lower(): file for email, file in pairs}
        if not rows:
            return
        if self.engine.dialect.name == "postgresql":  # each list as one array
            keys = sorted(rows)
            values = {"emails": keys, "files": [rows[k] for k in keys]}
            with self.engine.begin() as conn:
                conn.execute(_FORGET, values)
                conn.execute(_LEARN, values)
            return
        with self.engine.begin() as conn:
            for part in chunks(sorted(rows), 250):
                files = [rows[k] for k in part]
                conn.execute(
                    delete(_TABLE).where(or_(_TABLE.c.email.in_(part), _TABLE.c.file.in_(files)))
                )
                # Another run sharing the edition may write the same rows at the same
                # time: the row it made is replaced, not a reason to fail.
                conn.execute(_upsert(self.engine), [{"email": k, "file": rows[k]} for k in part])


def _upsert(engine: Any) -> Any:
    """INSERT, or on an address already there, UPDATE its file (SQLite and PostgreSQL)."""
    if engine.dialect.name not in ("sqlite", "postgresql"):
        return insert(_TABLE)
    dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{engine.dialect.name}")
    stmt = dialect.insert(_TABLE)
    return stmt.on_conflict_do_update(
        index_elements=[_TABLE.c.email], set_={"file": stmt.excluded.file}
    )
