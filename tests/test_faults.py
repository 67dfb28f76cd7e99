"""Delivery through server faults: 421 greetings, 451 and 550 replies, dropped connections,
lost replies and slow answers, against a real SMTP server on loopback."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from digest.delivery import deliver, message_id
from digest.delivery._claims import UNKNOWN_LIMIT
from digest.errors import AuthError, SendError
from digest.store import Store
from tests.smtpserver import SmtpServer
from tests.test_send import EDITION, addresses, clock, make_config, outgoing, parse


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "s3cret-for-tests-only")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The delivery log, on SQLite and on PostgreSQL."""
    s = Store(db_url)
    yield s
    s.close()


def statuses(store: Store) -> dict[str, str]:
    return {d.email: d.status for d in store.deliveries(EDITION)}


def message_ids(srv: SmtpServer) -> list[str]:
    return [parse(raw)["Message-ID"] for _, _, raw in srv.messages]


@pytest.mark.parametrize("pipelining", [False, True])
def test_one_refused_recipient_fails_and_the_others_are_delivered(
    tmp_path: Path, store: Store, pipelining: bool
) -> None:
    bad = "reader2@example.net"
    with SmtpServer(reject={bad}, pipelining=pipelining) as srv:
        summary = deliver(make_config(tmp_path, srv), store, outgoing(addresses(5)), now=clock)
        assert sorted(srv.recipients()) == [a for a in addresses(5) if a != bad]
    assert sorted(summary.sent) == [a for a in addresses(5) if a != bad]
    assert summary.failed == [(bad, f"550 5.1.1 <{bad}>: no such user here")]
    assert not summary.ok
    assert statuses(store)[bad] == "failed"
    assert store.delivery(bad, EDITION).reply.startswith("550")  # type: ignore[union-attr]
    assert store.sent_paper_ids(bad) == set()


@pytest.mark.parametrize("pipelining", [False, True])
def test_451_is_retried_with_backoff_then_delivered(
    tmp_path: Path, store: Store, pipelining: bool
) -> None:
    waits: list[float] = []
    with SmtpServer(temp_fail={"reader1@example.net": 2}, pipelining=pipelining) as srv:
        cfg = make_config(tmp_path, srv, retries=3, retry_backoff=1.5)
        summary = deliver(cfg, store, outgoing(addresses(4)), now=clock, sleep=waits.append)
        assert sorted(srv.recipients()) == addresses(4)
        assert srv.refusals == [("reader1@example.net", 451)] * 2
    assert waits == [1.5, 3.0]  # exponential backoff, one wait per retry round
    assert summary.ok and len(summary.sent) == 4


def test_451_beyond_the_retries_is_left_deferred_for_the_next_run(
    tmp_path: Path, store: Store
) -> None:
    waits: list[float] = []
    greylisted = "reader0@example.net"
    with SmtpServer(temp_fail={greylisted: 4}) as srv:
        cfg = make_config(tmp_path, srv, retries=2, retry_backoff=10)
        summary = deliver(cfg, store, outgoing(addresses(3)), now=clock, sleep=waits.append)
        assert waits == [10, 20]
        assert summary.deferred == [(greylisted, f"451 4.7.1 <{greylisted}>: try again later")]
        assert sorted(summary.sent) == addresses(2, 1)
        assert statuses(store)[greylisted] == "deferred"
        # the next run sends exactly the deferred one (the server now accepts it)
        again = deliver(cfg, store, outgoing(addresses(3)), now=clock, sleep=waits.append)
        assert again.sent == [greylisted] and sorted(again.already_sent) == addresses(2, 1)
        assert Counter(srv.recipients()) == dict.fromkeys(addresses(3), 1)
    assert statuses(store) == dict.fromkeys(addresses(3), "sent")


def test_421_greeting_is_retried_then_the_run_continues(tmp_path: Path, store: Store) -> None:
    waits: list[float] = []
    with SmtpServer(refuse_connections=2) as srv:
        cfg = make_config(tmp_path, srv, retries=3, retry_backoff=0.5)
        summary = deliver(cfg, store, outgoing(addresses(3)), now=clock, sleep=waits.append)
        assert sorted(srv.recipients()) == addresses(3)
        assert srv.connections == 3
    assert waits == [0.5, 1.0]
    assert summary.ok


def test_server_down_leaves_everything_deferred(tmp_path: Path, store: Store) -> None:
    waits: list[float] = []
    with SmtpServer(refuse_connections=1000) as srv:
        cfg = make_config(tmp_path, srv, retries=2, connections=2)
        summary = deliver(cfg, store, outgoing(addresses(450)), now=clock, sleep=waits.append)
        assert srv.messages == []
    assert summary.sent == [] and summary.failed == []
    assert sorted(e for e, _ in summary.deferred) == sorted(addresses(450))
    assert all("421" in why for _, why in summary.deferred)
    assert set(statuses(store).values()) == {"deferred"}
    assert len(waits) <= 2 * 2  # bounded: each connection retries, then the run gives up


def test_connection_refused_is_deferred_with_a_clear_reason(tmp_path: Path, store: Store) -> None:
    srv = SmtpServer()  # never started: nothing listens on its port
    cfg = make_config(tmp_path, srv, retries=1)
    summary = deliver(cfg, store, outgoing(addresses(2)), now=clock, sleep=lambda _s: None)
    assert [e for e, _ in summary.deferred] == addresses(2)
    assert all("cannot connect" in why for _, why in summary.deferred)


def test_dropped_connection_reconnects_and_continues(tmp_path: Path, store: Store) -> None:
    with SmtpServer(drop_after=3) as srv:
        summary = deliver(make_config(tmp_path, srv), store, outgoing(addresses(10)), now=clock)
        assert Counter(srv.recipients()) == dict.fromkeys(addresses(10), 1)  # no duplicate
        assert srv.connections == 4
    assert summary.ok and len(summary.sent) == 10


def test_lost_reply_is_resent_with_the_same_message_id(tmp_path: Path, store: Store) -> None:
    """The server stored message 3 but the connection died before its "250": the fate is
    unknown to us, so it is sent again, with the same Message-ID."""
    with SmtpServer(lose_reply={3}) as srv:
        summary = deliver(make_config(tmp_path, srv), store, outgoing(addresses(5)), now=clock)
        counts = Counter(srv.recipients())
        ids = message_ids(srv)
    assert summary.ok and len(summary.sent) == 5
    twice = [a for a, n in counts.items() if n == 2]
    assert len(twice) == 1 and sum(counts.values()) == 6
    copies = [i for i in ids if i == message_id(twice[0], EDITION, "example.org")]
    assert len(copies) == 2  # the receiving side can drop the second copy


def test_slow_server_beyond_the_timeout_is_deferred_and_copies_share_the_id(
    tmp_path: Path, store: Store
) -> None:
    # No retries: the server keeps each copy it times out on (three would be given up).
    with SmtpServer(delay=0.6) as srv:
        cfg = make_config(tmp_path, srv, timeout=0.3, retries=0)
        summary = deliver(cfg, store, outgoing(addresses(1)), now=clock, sleep=lambda _s: None)
        assert summary.deferred and summary.deferred[0][0] == "reader0@example.net"
        assert "timed out" in summary.deferred[0][1]
        srv.delay = 0
        again = deliver(make_config(tmp_path, srv), store, outgoing(addresses(1)), now=clock)
        assert again.sent == ["reader0@example.net"]
        ids = message_ids(srv)
    assert ids == [message_id("reader0@example.net", EDITION, "example.org")] * 2


def test_mixed_faults_with_parallel_connections(tmp_path: Path, store: Store) -> None:
    emails = addresses(60)
    with SmtpServer(
        reject={emails[7]},
        temp_fail={emails[20]: 1, emails[40]: 99},
        drop_after=7,
        lose_reply={15, 33},
        pipelining=True,
    ) as srv:
        cfg = make_config(tmp_path, srv, connections=4, retries=2, max_per_connection=10)
        summary = deliver(cfg, store, outgoing(emails), now=clock, sleep=lambda _s: None)
        counts = Counter(srv.recipients())
        ids = message_ids(srv)
    assert [e for e, _ in summary.failed] == [emails[7]]
    assert [e for e, _ in summary.deferred] == [emails[40]]
    assert sorted(summary.sent) == sorted(set(emails) - {emails[7], emails[40]})
    assert set(counts) == set(summary.sent)
    assert sum(counts.values()) == len(summary.sent) + 2  # the two lost replies
    assert len(ids) - len(set(ids)) == 2  # every copy repeats its original's Message-ID
    assert statuses(store) == {
        **dict.fromkeys(summary.sent, "sent"),
        emails[7]: "failed",
        emails[40]: "deferred",
    }


@pytest.mark.parametrize("pipelining", [False, True])
def test_refused_sender_stops_the_run_instead_of_failing_everyone(
    tmp_path: Path, store: Store, pipelining: bool
) -> None:
    with SmtpServer(reject_sender=True, pipelining=pipelining) as srv:
        with pytest.raises(SendError, match=r"refused our sender digest@example\.org") as info:
            deliver(make_config(tmp_path, srv), store, outgoing(addresses(30)), now=clock)
        assert srv.messages == []
    assert "550 5.7.1" in str(info.value)
    assert set(statuses(store).values()) == {"deferred"}


def test_authentication_required_but_not_configured(tmp_path: Path, store: Store) -> None:
    with SmtpServer(tls="starttls", auth=("digest", "pw")) as srv:
        with pytest.raises(AuthError, match=r"requires authentication \(530"):
            deliver(make_config(tmp_path, srv), store, outgoing(addresses(3)), now=clock)
        assert srv.messages == []
    assert "sent" not in set(statuses(store).values())


def attempts(store: Store) -> dict[str, tuple[str, int, int]]:
    """email -> (status, attempts, outcomes unknown), read from the database."""
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT email, status, attempts, unknown_outcomes FROM delivery"))
        return {e: (st, a, u) for e, st, a, u in rows}


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_relay_that_drops_before_every_reply_gets_each_message_a_bounded_number_of_times(
    tmp_path: Path, store: Store, pipelining: bool
) -> None:
    """The relay stores each message and closes the connection before its "250": each
    try's outcome is unknown. After UNKNOWN_LIMIT of them, across runs, the message is
    failed and reported, never sent again; ``attempts`` counts every try."""
    emails = addresses(3)
    with SmtpServer(lose_every_reply=True, pipelining=pipelining) as srv:
        cfg = make_config(tmp_path, srv, retries=3)
        first = deliver(cfg, store, outgoing(emails), now=clock, sleep=lambda _s: None)
        second = deliver(cfg, store, outgoing(emails), now=clock, sleep=lambda _s: None)
        counts = Counter(srv.recipients())
        ids = set(message_ids(srv))
    assert counts == dict.fromkeys(emails, UNKNOWN_LIMIT)  # was 16 per run, 32 after two
    assert len(ids) == len(emails)  # the copies of a message share its Message-ID
    assert first.sent == [] and first.deferred == [] and not first.ok
    assert sorted(e for e, _ in first.failed) == emails
    assert all(why.startswith("outcome unknown") for _, why in first.failed)
    assert second.sent == [] and second.failed == [] and sorted(second.given_up) == emails
    assert attempts(store) == dict.fromkeys(emails, ("failed", 3, 3))


def test_a_run_that_resumes_a_message_with_unknown_outcomes_counts_them(
    tmp_path: Path, store: Store
) -> None:
    """Outcomes unknown add up across runs: two in a run that then defers the message, and
    the third, in the next run, gives it up."""
    with SmtpServer(lose_every_reply=True) as srv:
        cfg = make_config(tmp_path, srv, retries=0)  # one reconnect round: two tries a run
        first = deliver(cfg, store, outgoing(addresses(1)), now=clock, sleep=lambda _s: None)
        assert [e for e, _ in first.deferred] == addresses(1)
        assert attempts(store) == {addresses(1)[0]: ("deferred", 1, 1)}
        second = deliver(cfg, store, outgoing(addresses(1)), now=clock, sleep=lambda _s: None)
        assert [e for e, _ in second.deferred] == addresses(1)
        assert attempts(store) == {addresses(1)[0]: ("deferred", 2, 2)}
        third = deliver(cfg, store, outgoing(addresses(1)), now=clock, sleep=lambda _s: None)
        assert [e for e, _ in third.failed] == addresses(1)
        assert len(srv.messages) == UNKNOWN_LIMIT
    assert attempts(store) == {addresses(1)[0]: ("failed", 3, 3)}


def test_attempts_count_every_try(tmp_path: Path, store: Store) -> None:
    with SmtpServer(temp_fail={"reader1@example.net": 2}, lose_reply={1}) as srv:
        cfg = make_config(tmp_path, srv, retries=3)
        summary = deliver(cfg, store, outgoing(addresses(2)), now=clock, sleep=lambda _s: None)
        assert sorted(summary.sent) == addresses(2)
    # reader0: its first reply was lost (one unknown), then sent; reader1: 451 twice.
    assert attempts(store) == {
        "reader0@example.net": ("sent", 2, 1),
        "reader1@example.net": ("sent", 3, 0),
    }
