from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest.models import Paper
from digest.store import Store

T0 = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)


def make_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'digest.db'}")


def test_same_paper_from_two_sources_is_one_record(tmp_path: Path) -> None:
    store = make_store(tmp_path)
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


def test_editions_hold_papers_first_seen_since_previous_cutoff(tmp_path: Path) -> None:
    store = make_store(tmp_path)
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


def test_delivery_log_and_sent_papers(tmp_path: Path) -> None:
    store = make_store(tmp_path)
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


def test_feed_health(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.record_feed("hf", "https://x", T0, error="HTTP 500")
    store.record_feed("hf", "https://x", T0, error="HTTP 500")
    st = store.feed_state("hf")
    assert (st.failures, st.last_error, st.last_success) == (2, "HTTP 500", None)
    store.record_feed("hf", "https://x", T0 + timedelta(hours=1), etag='"abc"', count=30)
    st = store.feed_state("hf")
    assert (st.failures, st.etag, st.last_count) == (0, '"abc"', 30)
    assert st.last_success == T0 + timedelta(hours=1)
    assert st.last_error == "HTTP 500"  # kept for `digest feeds`
