"""The web app's tables: pending subscriptions, rate limits, spent tokens, what each
digest held, erased addresses; on a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from digest.store import SentDigest, Store

NOW = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """On a SQLite file and on PostgreSQL (tests/conftest.py)."""
    s = Store(db_url)
    yield s
    s.close()


def test_pending_subscription_expires_is_replaced_and_is_taken_once(store: Store) -> None:
    first = store.add_pending("Ada@Example.org", {"name": "Ada"}, NOW, timedelta(hours=48))
    assert first.email == "ada@example.org" and first.data == {"name": "Ada"}
    second = store.add_pending("ada@example.org", {"name": "Ada L."}, NOW, timedelta(hours=48))
    assert store.pending(first.id, NOW) is None  # only the latest mail works
    assert store.pending(second.id, NOW + timedelta(hours=47)) == second
    assert store.pending(second.id, NOW + timedelta(hours=49)) is None
    assert store.take_pending(second.id, NOW + timedelta(hours=1)) == second
    assert store.take_pending(second.id, NOW + timedelta(hours=1)) is None
    third = store.add_pending("bob@example.org", {}, NOW, timedelta(hours=1))
    assert store.take_pending(third.id, NOW + timedelta(hours=2)) is None  # expired


def test_confirming_twice_at_once_gives_it_to_one(store: Store) -> None:
    pending = store.add_pending("ada@example.org", {}, NOW, timedelta(hours=48))
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(store.take_pending(pending.id, NOW)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(g is not None for g in got) == 1


def test_rate_limit_counts_per_key_and_window(store: Store) -> None:
    hour = timedelta(hours=1)
    assert [store.hit("ip:1", 3, hour, NOW) for _ in range(5)] == [True] * 3 + [False] * 2
    assert store.hit("ip:2", 3, hour, NOW)  # another key
    assert store.hit("ip:1", 3, hour, NOW + hour)  # a new window
    assert store.prune_rates(NOW + timedelta(minutes=30)) == 1  # ip:2's old window


def test_rate_limit_holds_under_concurrent_requests(store: Store) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        ok = store.hit("ip:9", 10, timedelta(hours=1), NOW)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=hit) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 10


def test_a_single_use_token_is_spent_once(store: Store) -> None:
    assert not store.token_used("abc")
    assert store.use_token("abc", NOW)
    assert not store.use_token("abc", NOW)
    assert store.token_used("abc")
    assert store.prune_used_tokens(NOW + timedelta(days=3)) == 1
    assert not store.token_used("abc")


def test_what_each_digest_held(store: Store) -> None:
    ed = date(2026, 6, 12)
    item = SentDigest(
        "Ada@example.org", ed, (("2506.1", 3.25, ("matches 'x'",)), ("2506.2", 1.0, ()))
    )
    store.record_digests([item], NOW)
    got = store.sent_digest("ada@example.org", ed)
    assert got is not None and got.papers == item.papers
    store.record_digests([SentDigest("ada@example.org", ed, (("2506.3", 2.0, ()),))], NOW)
    assert [p for p, _, _ in store.sent_digest("ada@example.org", ed).papers] == ["2506.3"]  # type: ignore[union-attr]
    assert len(store.sent_digests("ada@example.org")) == 1
    assert store.forget_digests("ada@example.org") == 1
    assert store.sent_digest("ada@example.org", ed) is None


def test_erased_addresses_are_kept_as_hashes(store: Store) -> None:
    store.add_erased("h1", NOW)
    store.add_erased("h1", NOW)
    assert store.erased(["h1", "h2"]) == {"h1"}
    assert store.count_erased() == 1


def test_forgetting_a_reader_leaves_no_row_naming_them(store: Store) -> None:
    """Every table that names an address, on both databases; other readers untouched."""
    ed = date(2026, 6, 12)
    for who in ("Ada@example.org", "bob@example.org"):
        store.set_delivery(who, ed, "sent", NOW, message_id=f"<{who}>", papers=["2506.1"])
        store.record_digests([SentDigest(who, ed, (("2506.1", 1.0, ()),))], NOW)
        store.remember_subscriber_files([(who.lower(), who.split("@")[0] + ".toml")])
        store.suppress(who, NOW, "asked")
    store.hit("subscribe-address:k-ada", 3, timedelta(days=1), NOW)
    store.hit("subscribe-address:k-bob", 3, timedelta(days=1), NOW)
    run = store.start_run(NOW, ed)
    store.finish_run(run, NOW, {"failed": [["ADA@example.org", "550"], ["bob@example.org", "x"]]})
    store.forget_reader("ada@example.org", rate_keys=["subscribe-address:k-ada"])
    assert store.deliveries_of("ada@example.org") == [] and store.sent_digests("ada@x.org") == []
    assert store.sent_paper_ids("Ada@example.org") == set()
    assert store.subscriber_files(["ada@example.org"]) == {}
    assert "ada@example.org" not in store.suppressed()
    last = store.last_run()
    assert last is not None and last[2]["failed"] == [["(erased)", "550"], ["bob@example.org", "x"]]
    assert store.hit("subscribe-address:k-ada", 1, timedelta(days=1), NOW)  # a fresh counter
    assert not store.hit("subscribe-address:k-bob", 1, timedelta(days=1), NOW)
    assert len(store.deliveries_of("bob@example.org")) == 1 and "bob@example.org" in (
        store.suppressed()
    )
    assert store.subscriber_files(["bob@example.org"]) == {"bob@example.org": "bob.toml"}


def test_suppressing_one_address_from_many_requests_at_once(store: Store) -> None:
    errors: list[BaseException] = []

    def suppress() -> None:
        try:
            store.suppress("ada@example.org", NOW, "one-click")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=suppress) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.suppressed() == {"ada@example.org"}
