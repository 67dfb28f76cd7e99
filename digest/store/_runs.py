"""Runs (when each started and finished, and its summary) and the suppression list."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
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
        for attempt in range(3):  # two requests suppressing one address at once: one inserts
            with self.session() as s:
                s.merge(Suppression(email=email.lower(), at=now, reason=reason))
                try:
                    s.commit()
                    return
                except IntegrityError:
                    if attempt == 2:
                        raise
                    s.rollback()

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
