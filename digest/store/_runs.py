"""Runs (when each started and finished, and its summary) and the suppression list."""

from __future__ import annotations

import importlib
import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import select

from ._base import Base, utc
from ._schema import RunRow, Suppression


class Runs(Base):
    def start_run(self, now: datetime, edition: date | None) -> int:
        with self.session() as s:
            row = RunRow(started=now, edition=edition)
            s.add(row)
            s.commit()
            assert row.id is not None
            return row.id

    def finish_run(self, run_id: int, now: datetime, summary: dict[str, Any]) -> None:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                return
            row.finished = now
            row.summary = json.dumps(summary, default=str)
            s.add(row)
            s.commit()

    def last_run(self) -> tuple[datetime, datetime | None, dict[str, Any]] | None:
        with self.session() as s:
            row = s.exec(select(RunRow).order_by(RunRow.id.desc())).first()  # type: ignore[union-attr]
        if row is None:
            return None
        return utc(row.started) or row.started, utc(row.finished), json.loads(row.summary)


class Suppressions(Base):
    def suppress(self, email: str, now: datetime, reason: str = "") -> None:
        """Suppress ``email`` (when and why replaced if it was already): one statement, so
        that many requests suppressing one address at once each succeed (mail providers
        retry the one-click POST)."""
        t: Any = Suppression.__table__  # type: ignore[attr-defined]
        values = {"email": email.lower(), "at": now, "reason": reason}
        name = self.engine.dialect.name
        if name in ("sqlite", "postgresql"):
            dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{name}")
            stmt = dialect.insert(t)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.email],
                set_={"at": stmt.excluded.at, "reason": stmt.excluded.reason},
            )
        else:  # pragma: no cover - the two databases digest supports have upserts
            stmt = insert(t)
        with self.engine.begin() as conn:
            conn.execute(stmt, values)

    def unsuppress(self, email: str) -> None:
        with self.session() as s:
            row = s.get(Suppression, email.lower())
            if row is not None:
                s.delete(row)
                s.commit()

    def suppressed(self) -> set[str]:
        with self.session() as s:
            return set(s.exec(select(Suppression.email)).all())

    def suppressions(self) -> dict[str, tuple[datetime, str]]:
        """Per lower-cased email: (when, why) it was suppressed."""
        with self.session() as s:
            rows = s.exec(select(Suppression)).all()
        return {r.email: (utc(r.at) or r.at, r.reason) for r in rows}
