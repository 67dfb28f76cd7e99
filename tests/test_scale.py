"""What makes a run fast and small at newsletter scale, checked for behaviour: subscribers
streamed in batches, summaries that keep a sample, the per-part MIME encoding, the quick
text wrap, the SMTP envelope sent ahead, and the cached address checks."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email

from digest.cli._commands import print_run_summary
from digest.config import Config, Sender, Smtp
from digest.delivery import DeliverySummary, build_message
from digest.delivery._smtp import SmtpConnection
from digest.errors import ProfileError
from digest.models import Digest, Paper, Profile, Scored
from digest.pipeline import Pick, RunSummary
from digest.qp import QpEncoder
from digest.rendering import Renderer
from digest.rendering._pieces import quick_line
from digest.rendering._textfmt import Wrapper
from digest.store import Store
from digest.subscribers import (
    UNSUBSCRIBED,
    Roster,
    _roster,
    check_email,
    iter_profiles,
    load_profiles,
)
from digest.tally import Tally

from .conftest import write_subscriber
from .smtpserver import SmtpServer
from .test_editions import Project, at, hf_entries

EDITION = date(2026, 6, 12)
NOW = datetime(2026, 6, 12, 7, tzinfo=UTC)


# ---------------------------------------------------------------- summaries


def test_a_tally_keeps_a_sample_and_counts_everything() -> None:
    t: Tally[int] = Tally(cap=3)
    t.extend(range(10))
    t.append(10)
    assert t == [0, 1, 2] and t.total == 11 and t.more == 8
    assert Tally([1, 2]) == [1, 2] and Tally([1, 2]).total == 2
    with pytest.raises(TypeError):
        t.insert(0, 5)


def test_the_run_summary_prints_counts_beyond_its_sample(capsys: Any) -> None:
    summary = RunSummary(edition=EDITION)
    summary.picks = Tally(cap=2)
    for i in range(5):
        summary.picks.append(Pick(f"r{i}@example.org", 3, "A paper"))
        summary.skip(f"s{i}@example.org", UNSUBSCRIBED)
    delivery = DeliverySummary()
    delivery.sent = Tally(cap=2)
    delivery.failed = Tally(cap=1)
    delivery.sent.extend(f"r{i}@example.org" for i in range(5))
    delivery.failed.extend((f"f{i}@example.org", "550 no such user") for i in range(3))
    summary.delivery = delivery
    cfg = Config(sender=Sender(address="digest@example.org"), smtp=Smtp(host="localhost"))
    print_run_summary(cfg, summary)
    printed = capsys.readouterr()
    out, problems = printed.out, printed.err  # the failures go to stderr
    assert "5 sent, 0 deferred, 3 failed" in out
    assert "5 subscriber(s) skipped: unsubscribed" in out
    assert "failed: f0@example.org" in problems and "... and 2 more" in problems
    assert summary.as_dict()["sent"] == 5 and summary.as_dict()["failed_total"] == 3


# ---------------------------------------------------------------- streaming subscribers


def test_subscribers_stream_one_at_a_time_with_broken_and_duplicate_files(tmp_path: Path) -> None:
    folder = tmp_path / "subscribers"
    write_subscriber(folder, "a", 'email = "a@example.org"\ninterests = "x"\n')
    write_subscriber(folder, "b", 'email = "A@example.org"\ninterests = "x"\n')  # duplicate
    write_subscriber(folder, "c", 'email = "not an address"\ninterests = "x"\n')
    write_subscriber(folder, "d", 'email = "d@example.org"\ninterests = "x"\n')
    (folder / ".hidden.toml").write_text("broken", encoding="utf-8")
    errors: list[ProfileError] = []
    stream = iter_profiles(folder, errors.append)
    assert next(stream).email == "a@example.org" and errors == []  # nothing read ahead
    assert [p.email for p in stream] == ["d@example.org"]
    assert "already used by" in str(errors[0]) and str(errors[0]).startswith(str(folder / "b"))
    assert "c.toml" in str(errors[1])
    profiles, again = load_profiles(folder)
    assert [p.email for p in profiles] == ["a@example.org", "d@example.org"]
    assert [str(e) for e in again] == [str(e) for e in errors]


def test_the_roster_gives_groups_in_date_order_and_members_in_file_order() -> None:
    def profile(i: int) -> Profile:
        return Profile(email=f"r{i}@example.org", interests="x")

    later, earlier = (date(2026, 6, 13), "daily"), (date(2026, 6, 12), "daily")
    with Roster() as roster:
        roster.add(later, [profile(0), profile(1)])
        roster.add(earlier, [profile(2)])
        roster.add(later, [profile(3)])
        roster.add(later, [])
        assert roster.groups() == [earlier, later] and len(roster) == 4
        batches = list(roster.members(later, size=2))
        assert [[p.email for p in b] for b in batches] == [
            ["r0@example.org", "r1@example.org"],
            ["r3@example.org"],
        ]
        assert [p.email for b in roster.members(later) for p in b] == [
            "r0@example.org",
            "r1@example.org",
            "r3@example.org",
        ]


def test_a_run_in_batches_of_one_opens_editions_in_date_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file of a subscriber on tomorrow's edition (Tokyo) comes first; the service's
    edition (today, UTC) must still be opened first, or it would be empty."""
    monkeypatch.setattr(_roster, "BATCH", 1)
    p = Project(tmp_path)
    p.subscriber("a-tokyo", "tokyo@example.org", 'timezone = "Asia/Tokyo"\nsend_hour = 8')
    p.subscriber("b-here", "here@example.org")
    p.subscriber("c-weekly", "weekly@example.org", 'frequency = "weekly"\nweekday = "friday"')
    p.subscriber("d-here", "here2@example.org")
    p.publish(hf_entries()[:12])
    summary = p.run(at(12, 23))  # Friday 12th, 23:00 UTC: 08:00 on the 13th in Tokyo
    assert summary.due == 4 and summary.editions == [date(2026, 6, 12), date(2026, 6, 13)]
    got = p.delivered()
    assert {ed for ed, _ in got} == {"2026-06-12"}  # tomorrow's edition had nothing new
    assert sorted(who for _, who in got) == ["b-here", "c-weekly", "d-here"]
    assert all(ids for ids in got.values())


# ---------------------------------------------------------------- MIME per part


PIECES = ["a", " ", "\t", ".", "=", "é", "€", "\n", "x" * 80, "x" * 300, "😀", ".\n.", "\r"]
PIECES += ["\x00", "=" * 70, " " * 70, "y" * 73 + "=", "ab\ncd", "line\n"]


def test_parts_encode_to_what_the_whole_text_encodes_to() -> None:
    rng = random.Random(8)
    for _ in range(3000):
        parts = [
            "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(1, 8))
        ]
        whole = QpEncoder().encode("".join(parts))
        qp = QpEncoder()
        first, again = qp.encode_parts(parts), qp.encode_parts(parts)
        assert first == whole and again == whole
        lines = first.split(b"\r\n")
        assert first.endswith(b"\r\n") and b"\n" not in first.replace(b"\r\n", b"")
        assert not any(line.startswith(b".") for line in lines)
        assert all(len(line) <= 76 for line in lines)


def test_a_digest_is_the_join_of_its_parts_and_its_message_needs_no_dot_stuffing(
    tmp_path: Path,
) -> None:
    papers = [
        Paper(
            id=f"2606.{i:05d}",
            title=f"Paper {i}: . leading dots & <escapes>",
            abstract=". " + "Words that wrap. " * 40,
            authors=("Ada Lovelace", "Jörg Müller"),
            url=f"https://arxiv.org/abs/2606.{i:05d}",
            upvotes=i,
        )
        for i in range(6)
    ]
    cfg = Config(sender=Sender(address="digest@example.org", name="Paper Digest"))
    renderer = Renderer(cfg)
    renderer.begin_edition(papers)
    profile = Profile(email="ada@example.org", name="Ada", interests="words")
    reasons = (("matches 'words', 'wrap' · by Ada Lovelace (followed) · 3 upvotes " * 2,), ())
    picks = tuple(Scored(p, 1.0, reasons[i % 2]) for i, p in enumerate(papers))
    for _ in range(2):  # the second time from the caches
        out = renderer.render(Digest(profile, EDITION, picks), unsubscribe_url="https://x.org/u")
        assert out.html_parts and "".join(out.html_parts) == out.html
        assert out.text_parts and "".join(out.text_parts) == out.text
        digest = Digest(profile, EDITION, picks)
        naive = Renderer(cfg, fast=False).render(digest, unsubscribe_url="https://x.org/u")
        assert out.text == naive.text
        raw = build_message(cfg, profile, EDITION, out, now=NOW)
        assert b"\n." not in raw and not raw.startswith(b".")


def test_the_quick_wrap_wraps_like_the_text_wrapper() -> None:
    rng = random.Random(9)
    words = ["a", "word", "'quote'", "·", "é", "x" * 40, "x" * 76, "x" * 90, "1.", "*", "-"]
    wrapper = Wrapper()
    for _ in range(5000):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        line = rng.choice(["", "  ", "* ", "  Why: ", "3. ", "   - "]) + line
        line += rng.choice(["", " ", "  x", "\t"])
        assert quick_line(wrapper, line) == Wrapper().line(line), line


# ---------------------------------------------------------------- SMTP: envelope ahead


class _RawServer:
    """A small pipelining SMTP server that notes whether the next MAIL had already
    arrived when a message's data ended (the client sent it ahead)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.ahead: list[bool] = []
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the client may just go away
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"220 raw ready\r\n")
        buf = b""
        data: bytes | None = None
        while True:
            ended = b"\r\n" in buf if data is None else b"\r\n.\r\n" in buf
            if not ended:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                continue
            if data is not None:
                end = buf.index(b"\r\n.\r\n")
                self.messages.append(buf[:end])
                buf, data = buf[end + 5 :], None
                if not buf:
                    conn.settimeout(0.3)
                    try:
                        buf = conn.recv(65536)
                    except TimeoutError:
                        buf = b""
                    conn.settimeout(None)
                self.ahead.append(buf.startswith(b"MAIL"))
                conn.sendall(b"250 queued\r\n")
                continue
            line, buf = buf.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
            elif verb == b"DATA":
                data = b""
                conn.sendall(b"354 go on\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            elif verb == b"RCPT" and b"bad@" in line:
                conn.sendall(b"550 5.1.1 no such user\r\n")
            else:
                conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.sock.close()


def _connection(port: int) -> SmtpConnection:
    cfg = Config(
        sender=Sender(address="digest@example.org"),
        smtp=Smtp(host="127.0.0.1", port=port, security="none", timeout=5),
    )
    return SmtpConnection(cfg, "", None)


def test_the_next_envelope_goes_out_with_the_data() -> None:
    srv = _RawServer()
    conn = _connection(srv.port)
    try:
        mail = [
            (f"r{i}@example.org", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode()) for i in range(3)
        ]
        ahead = [*mail[1:], None]
        outcomes = [
            conn.send(
                "digest@example.org", rcpt, data, then=("digest@example.org", *nxt) if nxt else None
            )
            for (rcpt, data), nxt in zip(mail, ahead, strict=True)
        ]
        conn.close()
    finally:
        srv.close()
    assert [o.status for o in outcomes] == ["sent", "sent", "sent"]
    assert srv.ahead == [True, True, False]  # one round trip per message but the last
    assert [m.split(b"\r\n")[0] for m in srv.messages] == [
        b"Subject: 0",
        b"Subject: 1",
        b"Subject: 2",
    ]


def test_a_refused_recipient_sent_ahead_fails_alone_and_an_abandoned_one_is_not_sent() -> None:
    srv = _RawServer()
    conn = _connection(srv.port)
    sender = "digest@example.org"
    try:
        first = conn.send(
            sender,
            "a@example.org",
            b"Subject: a\r\n\r\na\r\n",
            then=(sender, "bad@example.org", b"x\r\n"),
        )
        bad = conn.send(
            sender,
            "bad@example.org",
            b"x\r\n",
            then=(sender, "c@example.org", b"Subject: c\r\n\r\nc\r\n"),
        )
        third = conn.send(
            sender,
            "c@example.org",
            b"Subject: c\r\n\r\nc\r\n",
            then=(sender, "d@example.org", b"d\r\n"),
        )
        conn.abandon()  # the run stops: d's envelope is open, its data never sent
        assert conn.smtp is None
        again = conn.send(sender, "d@example.org", b"Subject: d\r\n\r\nd\r\n")
        conn.close()
    finally:
        srv.close()
    assert (first.status, bad.status, third.status, again.status) == (
        "sent",
        "permanent",
        "sent",
        "sent",
    )
    assert "550" in bad.reply
    assert [m.split(b"\r\n")[0] for m in srv.messages] == [
        b"Subject: a",
        b"Subject: c",
        b"Subject: d",
    ]


def test_envelopes_sent_ahead_against_a_real_server_with_faults(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosmtpd, pipelining, one connection: a refused recipient in the middle."""
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "s3cret-for-tests-only")
    from .test_send import addresses, make_config, outgoing

    emails = addresses(12)
    with SmtpServer(reject={emails[5]}, pipelining=True) as srv:
        store = Store(db_url)
        try:
            from digest.delivery import deliver

            summary = deliver(make_config(tmp_path, srv), store, outgoing(emails), now=lambda: NOW)
        finally:
            store.close()
        got = srv.recipients()
    assert sorted(summary.sent) == sorted(set(emails) - {emails[5]})
    assert [e for e, _ in summary.failed] == [emails[5]]
    assert sorted(got) == sorted(summary.sent)


# ---------------------------------------------------------------- addresses, sent papers


@pytest.mark.parametrize(
    "address",
    [
        "Ada.Lovelace+digest@Example.ORG",
        "x@bücher.example",
        "x@xn--bcher-kva.example",
        "jörg@example.de",
        "a..b@example.org",
        "a@localhost",
        "a@example.invalid",
        "a@-bad.org",
        '"quoted"@example.org',
        "a@example.org.",
        "a" * 65 + "@example.org",
        "A!#$%&'*+/=?^_`{|}~-z@mail.example.org",
    ],
)
def test_the_address_check_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = check_email(address)
    except ValueError:
        got = None
    assert got == expected


def test_papers_sent_to_many_subscribers_in_one_query(db_url: str) -> None:
    store = Store(db_url)
    try:
        for email, edition, papers in [
            ("a@example.org", EDITION - timedelta(days=1), ["p1", "p2"]),
            ("a@example.org", EDITION, ["p3"]),
            ("b@example.org", EDITION - timedelta(days=2), ["p2", "p4"]),
        ]:
            store.set_delivery(email, edition, "sent", NOW, papers=papers)
        emails = ["a@example.org", "b@example.org", "c@example.org"]
        many = store.sent_papers_of(emails, other_than=EDITION)
        for e in emails:
            assert many.get(e, set()) == store.sent_paper_ids(e, other_than=EDITION)
        assert store.sent_papers_of(emails, other_than=EDITION, among={"p2"}) == {
            "a@example.org": {"p2"},
            "b@example.org": {"p2"},
        }
        # More candidates than one statement takes: asked in chunks, nothing lost.
        many_ids = {f"x{i:04d}" for i in range(2500)} | {"p4", "p1"}
        assert store.sent_papers_of(emails, other_than=EDITION, among=many_ids) == {
            "a@example.org": {"p1"},
            "b@example.org": {"p4"},
        }
    finally:
        store.close()
