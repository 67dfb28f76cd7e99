from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from digest.models import Paper
from digest.store import Store, upgrade_schema

T0 = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_same_paper_from_two_sources_is_one_record(store: Store) -> None:
    hf = Paper(
        id="2406.00001",
        title="A",
        abstract="short",
        sources=("huggingface",),
        upvotes=3,
        hf_url="https://huggingface.co/papers/2406.00001",
    )
    arxiv = Paper(
        id="2406.00001",
        title="A",
        abstract="a longer abstract from arXiv",
        sources=("arxiv-cs.CL",),
        categories=("cs.CL",),
        pdf_url="https://arxiv.org/pdf/2406.00001",
    )
    assert store.upsert_papers([hf], T0) == (1, 0)
    assert store.upsert_papers([arxiv], T0 + timedelta(hours=1)) == (0, 1)
    store.upsert_papers(
        [Paper(id="2406.00001", title="A", sources=("huggingface",), upvotes=40)],
        T0 + timedelta(hours=2),
    )
    [p] = store.get_papers(["2406.00001"])
    assert p.sources == ("arxiv-cs.CL", "huggingface")
    assert p.upvotes == 40  # trending changes during the day
    assert p.abstract == "a longer abstract from arXiv"
    assert p.categories == ("cs.CL",)
    assert p.hf_url and p.pdf_url
    assert p.first_seen == T0  # first sighting is kept
    assert store.count_papers() == 1


def test_editions_hold_papers_first_seen_since_previous_cutoff(store: Store) -> None:
    store.upsert_papers([Paper(id="1", title="day one")], T0)
    d1 = date(2026, 6, 12)
    after, until = store.edition_window(d1, T0 + timedelta(minutes=5))
    assert after is None
    assert [p.id for p in store.papers_seen_between(after, until)] == ["1"]
    # Nothing on day two (missed run), papers arrive on day three.
    store.upsert_papers([Paper(id="2", title="late")], T0 + timedelta(days=1, hours=3))
    store.upsert_papers([Paper(id="3", title="day three")], T0 + timedelta(days=2))
    after, until = store.edition_window(date(2026, 6, 14), T0 + timedelta(days=2, minutes=5))
    assert [p.id for p in store.papers_seen_between(after, until)] == ["2", "3"]
    # Re-running day one gives the same window, and a preview does not create editions.
    assert store.edition_window(d1, T0 + timedelta(days=3)) == (None, T0 + timedelta(minutes=5))
    store.edition_window(date(2026, 6, 20), T0 + timedelta(days=8), create=False)
    assert [e for e, _ in store.editions()] == [d1, date(2026, 6, 14)]


def test_delivery_log_and_sent_papers(store: Store) -> None:
    ed = date(2026, 6, 12)
    store.set_delivery(
        "a@example.org", ed, "sending", T0, message_id="<m1@example.org>", attempt=True
    )
    assert store.delivery("a@example.org", ed).status == "sending"  # type: ignore[union-attr]
    store.set_delivery("a@example.org", ed, "sent", T0, papers=["p1", "p2"])
    d = store.delivery("a@example.org", ed)
    assert d is not None and d.status == "sent" and d.message_id == "<m1@example.org>"
    assert store.sent_paper_ids("a@example.org") == {"p1", "p2"}
    assert store.sent_paper_ids("a@example.org", before=ed) == set()
    assert store.sent_paper_ids("b@example.org") == set()


def test_feed_health(store: Store) -> None:
    store.record_feed("hf", "https://x", T0, error="HTTP 500")
    store.record_feed("hf", "https://x", T0, error="HTTP 500")
    st = store.feed_state("hf")
    assert (st.failures, st.last_error, st.last_success) == (2, "HTTP 500", None)
    store.record_feed("hf", "https://x", T0 + timedelta(hours=1), etag='"abc"', count=30)
    st = store.feed_state("hf")
    assert (st.failures, st.etag, st.last_count) == (0, '"abc"', 30)
    assert st.last_success == T0 + timedelta(hours=1)
    assert st.last_error == "HTTP 500"  # kept for `digest feeds`


def _finish_many(store: Store, emails: list[str], edition: date, papers: list[str]) -> None:
    now = datetime(2026, 11, 27, 9, tzinfo=UTC)
    later = now + timedelta(minutes=5)
    with store.delivery_writer() as w:
        items = [(e, edition, f"<{i}@x>") for i, e in enumerate(emails)]
        assert len(w.claim(items, "run#1", now, later, limit=3, gave_up="")) == len(emails)
        # One call, as a group commit makes it: 40 x 10 papers, more than one INSERT takes.
        done = [(e, edition, "run#1", "sent", "250 ok", papers, 1, 0) for e in emails]
        assert w.commit(done, [], now, later) == (len(emails), set())


def test_sent_papers_of_many_messages_in_one_commit(store: Store) -> None:
    emails = [f"r{i:02d}@example.org" for i in range(40)]
    papers = [f"2501.{i:05d}" for i in range(10)]
    _finish_many(store, emails, date(2026, 11, 26), papers + papers[:3])  # repeats once
    got = store.sent_papers_of(emails, other_than=date(2026, 11, 27))
    assert got == {e: set(papers) for e in emails}
    assert store.subscriber_stats()["r07@example.org"] == (date(2026, 11, 26), 1, 10)


def test_a_database_made_before_keeps_its_sent_paper_table(tmp_path: Path) -> None:
    """Databases made before sent_paper lost its rowid keep the old table and work."""
    import sqlite3

    path = tmp_path / "digest.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE sent_paper (email VARCHAR NOT NULL, paper_id VARCHAR NOT NULL, "
            "edition DATE NOT NULL, PRIMARY KEY (email, paper_id))"
        )
        db.execute("INSERT INTO sent_paper VALUES ('a@example.org', 'old.1', '2026-11-01')")
    upgrade_schema(f"sqlite:///{path}")  # made before migrations: brought up to date first
    store = Store(f"sqlite:///{path}")
    try:
        _finish_many(store, ["a@example.org"], date(2026, 11, 26), ["new.1", "new.2"])
        got = store.sent_papers_of(["a@example.org"], other_than=date(2026, 11, 27))
        assert got == {"a@example.org": {"old.1", "new.1", "new.2"}}
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'sent_paper'").fetchone()
    assert "WITHOUT ROWID" not in sql.upper()


def test_a_delivery_log_made_before_claims_gets_their_columns(tmp_path: Path) -> None:
    """A database made before claims: its delivery table gains the claim columns, its rows
    are kept, and a row a run of that time left "sending" is taken back (no lease)."""
    import sqlite3

    path = tmp_path / "digest.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE delivery (id INTEGER NOT NULL, email VARCHAR NOT NULL, "
            "edition DATE NOT NULL, status VARCHAR NOT NULL, message_id VARCHAR NOT NULL, "
            "attempts INTEGER NOT NULL, papers INTEGER NOT NULL, reply VARCHAR NOT NULL, "
            "updated_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (email, edition))"
        )
        db.execute(
            "INSERT INTO delivery VALUES (1, 'a@example.org', '2026-11-26', 'sending', '<a>', "
            "1, 0, '', '2026-11-26 07:00:00.000000'), (2, 'b@example.org', '2026-11-26', "
            "'sent', '<b>', 1, 3, '250 ok', '2026-11-26 07:00:00.000000')"
        )
    edition = date(2026, 11, 26)
    upgrade_schema(f"sqlite:///{path}")  # made before migrations: brought up to date first
    for _ in range(2):  # and again: the columns are there now
        store = Store(f"sqlite:///{path}")
        store.close()
    store = Store(f"sqlite:///{path}")
    try:
        assert [(d.email, d.status) for d in store.deliveries(edition)] == [
            ("a@example.org", "sending"),
            ("b@example.org", "sent"),
        ]
        items = [(e, edition, f"<{e[0]}>") for e in ("a@example.org", "b@example.org")]
        with store.delivery_writer() as w:
            taken = w.claim(items, "run#1", T0, T0, limit=3, gave_up="")
        assert taken == {("a@example.org", edition): ("sending", 1, 0, "")}
    finally:
        store.close()


def test_votes_latest_wins_cleared_and_forgotten(store: Store) -> None:
    store.set_vote("Ada@Example.org", "2406.00001", 1, T0, source="web")
    store.set_vote("ada@example.org", "2406.00002", -1, T0 + timedelta(minutes=1))
    store.set_vote("ada@example.org", "2406.00001", -1, T0 + timedelta(minutes=2))  # changed
    store.set_vote("ben@example.org", "2406.00001", 1, T0)
    assert store.votes("ADA@example.org") == {
        "2406.00002": (-1, T0 + timedelta(minutes=1)),
        "2406.00001": (-1, T0 + timedelta(minutes=2)),
    }
    assert store.votes_of(["ada@example.org", "Ben@example.org", "cy@example.org"]) == {
        "ada@example.org": {"2406.00001": -1, "2406.00002": -1},
        "ben@example.org": {"2406.00001": 1},
    }
    store.set_vote("ada@example.org", "2406.00002", 0, T0)  # cleared
    assert set(store.votes("ada@example.org")) == {"2406.00001"}
    assert store.forget_votes("ada@example.org") == 1
    assert store.votes("ada@example.org") == {}
    assert store.votes("ben@example.org")  # only Ada's went
    with pytest.raises(ValueError, match=r"\+1, -1 or 0"):
        store.set_vote("ada@example.org", "2406.00001", 2, T0)
