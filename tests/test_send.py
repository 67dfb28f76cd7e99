"""Sending: message format, unsubscribe tokens, outbox and SMTP transports, the delivery log."""

from __future__ import annotations

import email
import email.policy
import itertools
import quopri
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.config import Config, Dkim, Sender, Smtp, Unsubscribe
from digest.delivery import (
    DeliverySummary,
    Outgoing,
    build_message,
    check_config,
    check_relay,
    check_unsubscribe_token,
    config_notes,
    deliver,
    message_id,
    unsubscribe_url,
)
from digest.errors import AuthError, ConfigError, SendError
from digest.models import Profile, Rendered
from digest.qp import QpEncoder
from digest.store import Store
from tests.smtpserver import SmtpServer

DATA = Path(__file__).parent / "data" / "send"
EDITION = date(2026, 6, 12)
NOW = datetime(2026, 6, 12, 7, 30, tzinfo=UTC)
SECRET = "s3cret-for-tests-only"


def clock() -> datetime:
    return NOW


def make_config(tmp_path: Path, srv: SmtpServer | None = None, **smtp: Any) -> Config:
    """A config for ``srv`` (or the outbox when None); ``smtp`` overrides [smtp] keys."""
    unsub = smtp.pop("unsubscribe", None) or Unsubscribe(
        url="https://lists.example.org/unsubscribe", mailto="unsubscribe@example.org"
    )
    dkim = smtp.pop("dkim", None) or Dkim()
    if srv is not None:
        smtp = {
            "host": "localhost",
            "port": srv.port,
            "security": srv.tls or "none",
            "ca_file": srv.ca_file,
            "retry_backoff": 0.0,
            "timeout": 5.0,
            **smtp,
        }
    return Config(
        database=f"sqlite:///{tmp_path / 'digest.db'}",
        outbox=str(tmp_path / "outbox"),
        sender=Sender(address="digest@example.org", name="Paper Digest"),
        smtp=Smtp(**smtp),
        unsubscribe=unsub,
        dkim=dkim,
        base_dir=tmp_path,
        path=tmp_path / "config.toml",
    )


def rendered(subject: str = "Your papers for 12 June 2026: 3 papers", n: int = 3) -> Rendered:
    html = (DATA / "digest.html").read_text(encoding="utf-8")
    text = (DATA / "digest.txt").read_text(encoding="utf-8")
    return Rendered(subject=subject, html=html, text=text)


def outgoing(emails: list[str], edition: date = EDITION, **kw: Any) -> list[Outgoing]:
    r = rendered(**kw)
    return [
        Outgoing(Profile(email=e, name=f"Reader {i}"), edition, r, (f"2606.{i:05d}", "2606.99999"))
        for i, e in enumerate(emails)
    ]


def addresses(n: int, start: int = 0) -> list[str]:
    return [f"reader{i}@example.net" for i in range(start, start + n)]


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """The delivery log, on SQLite and on PostgreSQL."""
    s = Store(db_url)
    yield s
    s.close()


# -- the message --------------------------------------------------------------------------------


def test_message_has_every_header_a_careful_sender_sets(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    profile = Profile(email="ada@example.org", name="Ada Lovelace")
    raw = build_message(cfg, profile, EDITION, rendered(), now=NOW)
    msg = parse(raw)
    assert msg["From"] == "Paper Digest <digest@example.org>"
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["Subject"] == "Your papers for 12 June 2026: 3 papers"
    assert msg["Date"] == "Fri, 12 Jun 2026 07:30:00 +0000"
    assert msg["Message-ID"] == message_id("ada@example.org", EDITION, "example.org")
    assert re.fullmatch(r"<[\w.]+@example\.org>", msg["Message-ID"])
    assert msg["List-Id"] == '"Paper Digest" <digest.example.org>'
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    targets = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert targets[0] == "mailto:unsubscribe@example.org?subject=unsubscribe"
    assert targets[1] == unsubscribe_url(cfg, "ada@example.org")
    assert targets[1].startswith("https://lists.example.org/unsubscribe?")
    assert msg["MIME-Version"] == "1.0"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        assert len(msg.get_all(name) or []) == 1, name


def test_body_is_multipart_alternative_text_then_html(tmp_path: Path) -> None:
    r = rendered()
    raw = build_message(make_config(tmp_path), Profile(email="a@example.org"), EDITION, r, now=NOW)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert parts[0].get_content().replace("\r\n", "\n") == r.text
    assert parts[1].get_content().replace("\r\n", "\n") == r.html
    assert "…" in parts[1].get_content()  # the fixture has non-ASCII text: it survives


def test_lines_are_crlf_and_within_rfc5322_limits(tmp_path: Path) -> None:
    long_subject = "Today's papers: " + " ".join(["transformers"] * 30) + " — ünïcode ✓"
    profile = Profile(email="a@example.org", name="Émilie du Châtelet " * 8)
    r = Rendered(subject=long_subject, html="<p>" + "x" * 5000 + "</p>", text="y" * 3000)
    raw = build_message(make_config(tmp_path), profile, EDITION, r, now=NOW)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
    assert b"\r" not in raw.replace(b"\r\n", b"")  # no bare CR
    lines = raw.split(b"\r\n")
    # 78 columns everywhere, except the unsubscribe URL: it is never broken (receivers
    # would not rejoin it), and stays far below the hard limit of 998
    url = unsubscribe_url(make_config(tmp_path), "a@example.org").encode()
    assert max(len(line) for line in lines if url not in line) <= 78
    assert max(len(line) for line in lines) <= 998
    assert all(b < 128 for b in raw)  # 7-bit clean: quoted-printable and RFC 2047
    msg = parse(raw)
    assert msg["Subject"] == long_subject
    raw_to = email.message_from_bytes(raw, policy=email.policy.compat32)["To"]
    name = " ".join(("Émilie du Châtelet " * 8).split())[:100]  # names are cut at 100
    assert str(make_header(decode_header(raw_to))) == f"{name} <a@example.org>"


def test_quoted_printable_cache_gives_the_same_bytes_as_encoding_afresh() -> None:
    texts = [
        (DATA / "digest.html").read_text(encoding="utf-8"),
        (DATA / "digest.txt").read_text(encoding="utf-8"),
        "",
        "no line end",
        ".leading dot\r\nCR LF\rCR alone\n\n",
        "trailing space \n" * 3,
    ]
    small, fresh = QpEncoder(limit=2000, shared_limit=3000), QpEncoder(limit=0, shared_limit=0)
    for _ in range(3):
        for text in texts:
            encoded = small.encode(text)
            assert encoded == fresh.encode(text)
            assert encoded.endswith(b"\r\n") and b"\n." not in encoded
            assert all(len(line) <= 78 for line in encoded.split(b"\r\n"))
            norm = text.replace("\r\n", "\n").replace("\r", "\n")
            decoded = quopri.decodestring(encoded).decode().replace("\r\n", "\n")
            assert decoded == (norm if norm.endswith("\n") else norm + "\n")
    tiers = small.lines  # bounded: a line too long for the bound is alone in its tier
    assert tiers.fresh_size == 2 * sum(map(len, tiers.fresh))
    assert tiers.fresh_size <= 2000 or len(tiers.fresh) == 1


def test_non_ascii_subject_is_rfc2047_encoded(tmp_path: Path) -> None:
    r = rendered(subject="Vos articles du 12 juin — 3 résultats")
    raw = build_message(make_config(tmp_path), Profile(email="a@example.org"), EDITION, r, now=NOW)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    assert parse(raw)["Subject"] == "Vos articles du 12 juin — 3 résultats"


def test_no_value_can_inject_a_header(tmp_path: Path) -> None:
    evil = "x\r\nBcc: victim@example.com\nX-Injected: 1\r\n\r\nbody"
    profile = Profile(email="a@example.org", name=evil)
    r = Rendered(subject=evil, html="<p>hi</p>", text="hi")
    msg = parse(build_message(make_config(tmp_path), profile, EDITION, r, now=NOW))
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg.get_content_type() == "multipart/alternative"
    for bad in (
        "a@example.org\r\nBcc: v@example.com",
        "a@example.org, v@example.com",
        "<a@example.org>",
        "a b@example.org",
    ):
        with pytest.raises(SendError, match="not a single email address"):
            build_message(make_config(tmp_path), Profile(email=bad), EDITION, r, now=NOW)


def test_internationalized_addresses(tmp_path: Path, store: Store) -> None:
    cfg = make_config(tmp_path)
    raw = build_message(cfg, Profile(email="user@exämple.de"), EDITION, rendered(), now=NOW)
    assert parse(raw)["To"] == "user@xn--exmple-cua.de"
    with pytest.raises(SendError, match="SMTPUTF8"):
        build_message(cfg, Profile(email="jörg@example.de"), EDITION, rendered(), now=NOW)
    with SmtpServer() as srv:
        emails = ["user@exämple.de", "jörg@example.de", "plain@example.net"]
        summary = deliver(make_config(tmp_path, srv), store, outgoing(emails), now=clock)
        assert sorted(srv.recipients()) == ["plain@example.net", "user@xn--exmple-cua.de"]
    assert [email for email, _ in summary.failed] == ["jörg@example.de"]
    assert "SMTPUTF8" in summary.failed[0][1]
    assert statuses_of(store) == {
        "user@exämple.de": "sent",
        "jörg@example.de": "failed",
        "plain@example.net": "sent",
    }


def statuses_of(store: Store) -> dict[str, str]:
    return {d.email: d.status for d in store.deliveries(EDITION)}


def test_message_id_is_deterministic_per_subscriber_and_edition() -> None:
    a = message_id("Ada@Example.org", EDITION, "example.org")
    assert a == message_id("ada@example.org", EDITION, "example.org")
    assert a != message_id("ada@example.org", date(2026, 6, 13), "example.org")
    assert a != message_id("bob@example.org", EDITION, "example.org")
    assert a.endswith("@example.org>")


def test_unsubscribe_url_carries_a_verifiable_per_subscriber_token(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    url = unsubscribe_url(cfg, "ada@example.org")
    query = parse_qs(urlsplit(url).query)
    assert query["e"] == ["ada@example.org"]
    token = query["token"][0]
    assert check_unsubscribe_token(cfg, "ada@example.org", token)
    assert not check_unsubscribe_token(cfg, "bob@example.org", token)
    assert token not in unsubscribe_url(cfg, "bob@example.org")
    assert SECRET not in url


def test_unsubscribe_url_template_and_unconfigured(tmp_path: Path, monkeypatch: Any) -> None:
    cfg = make_config(
        tmp_path, unsubscribe=Unsubscribe(url="https://x.example/u/{token}?e={email}")
    )
    assert re.fullmatch(
        r"https://x\.example/u/[\w-]{43}\?e=a@example\.org", unsubscribe_url(cfg, "a@example.org")
    )
    assert (
        unsubscribe_url(
            make_config(tmp_path, unsubscribe=Unsubscribe(mailto="u@example.org")), "a@example.org"
        )
        == ""
    )
    with pytest.raises(ConfigError, match="https"):
        unsubscribe_url(
            make_config(tmp_path, unsubscribe=Unsubscribe(url="http://x.example/u")),
            "a@example.org",
        )
    monkeypatch.delenv("DIGEST_UNSUBSCRIBE_SECRET")
    with pytest.raises(ConfigError, match="DIGEST_UNSUBSCRIBE_SECRET"):
        unsubscribe_url(cfg, "a@example.org")


def test_check_config_names_the_key_that_is_wrong(tmp_path: Path, monkeypatch: Any) -> None:
    check_config(make_config(tmp_path))
    bad = make_config(tmp_path, unsubscribe=Unsubscribe(mailto="leave at example.org"))
    with pytest.raises(ConfigError, match=r"\[unsubscribe\] mailto: 'leave at example.org'"):
        check_config(bad)
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv, user="digest")
        with pytest.raises(ConfigError, match="DIGEST_SMTP_PASSWORD"):
            check_config(cfg)
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
        check_config(cfg)
        assert srv.connections == 0  # nothing was sent, not even a connection


def test_without_https_url_no_one_click_header(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, unsubscribe=Unsubscribe(mailto="leave@example.org"))
    msg = parse(build_message(cfg, Profile(email="a@example.org"), EDITION, rendered(), now=NOW))
    assert "one-click" not in caplog.text  # the outbox: nobody's inbox to protect
    assert config_notes(cfg) == []
    with SmtpServer() as srv:
        smtp_cfg = make_config(tmp_path, srv, unsubscribe=Unsubscribe(mailto="leave@example.org"))
        build_message(smtp_cfg, Profile(email="a@example.org"), EDITION, rendered(), now=NOW)
    assert caplog.text == ""  # said by `digest check` (and logged once by a run), not per message
    (note,) = config_notes(smtp_cfg)
    assert "require one-click unsubscribe (RFC 8058)" in note
    assert msg["List-Unsubscribe"] == "<mailto:leave@example.org?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058 needs an https URI


# -- outbox transport ---------------------------------------------------------------------------


def test_outbox_writes_one_eml_per_subscriber_and_rerun_sends_nothing(
    tmp_path: Path, store: Store
) -> None:
    cfg = make_config(tmp_path)
    items = [
        Outgoing(
            Profile(email=f"r{i}@example.net", path=tmp_path / f"reader-{i}.toml"),
            EDITION,
            rendered(),
            ("2606.00001",),
        )
        for i in range(3)
    ]
    summary = deliver(cfg, store, iter(items), now=clock)
    assert sorted(summary.sent) == ["r0@example.net", "r1@example.net", "r2@example.net"]
    assert summary.ok
    files = sorted((tmp_path / "outbox" / "2026-06-12").glob("*.eml"))
    assert [f.name.split(".")[0] for f in files] == ["reader-0", "reader-1", "reader-2"]
    assert parse(files[0].read_bytes())["To"] == "r0@example.net"
    assert store.sent_paper_ids("r1@example.net") == {"2606.00001"}
    again = deliver(cfg, store, iter(items), now=clock)
    assert again.sent == [] and sorted(again.already_sent) == summary.sent


def test_outbox_names_never_collide(tmp_path: Path, store: Store) -> None:
    """File names that make the same safe name (a space and "_", "ë" and "_", case) still
    give one file per subscriber: each sent entry is a file of its own."""
    cfg = make_config(tmp_path)
    stems = ["a b", "a_b", "zoë", "zo_", "Reader", "reader"]
    items = [
        Outgoing(
            Profile(email=f"r{i}@example.net", path=tmp_path / f"{stem}.toml"),
            EDITION,
            rendered(),
        )
        for i, stem in enumerate(stems)
    ]
    summary = deliver(cfg, store, iter(items), now=clock)
    assert summary.sent.total == len(stems)
    files = sorted((tmp_path / "outbox" / "2026-06-12").iterdir())
    assert len(files) == len(stems)  # was 3 files for 5 "sent"
    assert len({f.name.lower() for f in files}) == len(stems)  # case-insensitive too
    assert sorted(parse(f.read_bytes())["To"] for f in files) == sorted(summary.sent)
    assert all(re.fullmatch(r"[A-Za-z0-9._@-]+\.eml", f.name) for f in files)


def test_an_outbox_write_that_fails_leaves_no_tmp_file(tmp_path: Path, store: Store) -> None:
    """The message is written, but cannot take its place (a folder is in the way): the run
    stops with one line, nothing is marked sent that is not there, and no .tmp is left."""
    from digest.delivery._outbox import outbox_path

    cfg = make_config(tmp_path)
    items = outgoing(addresses(3))
    outbox_path(cfg, items[1].profile, EDITION).mkdir(parents=True)
    with pytest.raises(SendError, match="cannot write to the outbox"):
        deliver(cfg, store, iter(items), now=clock)
    folder = tmp_path / "outbox" / "2026-06-12"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        outbox_path(cfg, item.profile, EDITION).name for item in items[:2]
    )  # the first message, the folder in the way, and no .tmp
    assert statuses_of(store) == {
        "reader0@example.net": "sent",
        "reader1@example.net": "deferred",
        "reader2@example.net": "deferred",
    }


def test_outbox_that_cannot_be_written_stops_with_a_clear_error(
    tmp_path: Path, store: Store
) -> None:
    (tmp_path / "outbox").write_text("a file where the folder should be")
    with pytest.raises(SendError, match="cannot write to the outbox"):
        deliver(make_config(tmp_path), store, outgoing(addresses(3)), now=clock)
    assert {d.status for d in store.deliveries(EDITION)} == {"deferred"}


# -- SMTP transport -----------------------------------------------------------------------------


def test_smtp_delivers_and_logs_each_message(tmp_path: Path, store: Store) -> None:
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv)
        summary = deliver(cfg, store, iter(outgoing(addresses(5))), now=clock)
        assert summary == DeliverySummary(sent=summary.sent)
        assert sorted(summary.sent) == addresses(5)
        assert sorted(srv.recipients()) == addresses(5)
        for mail_from, rcpts, raw in srv.messages:
            assert mail_from == "digest@example.org"
            msg = parse(raw)
            assert msg["To"].addresses[0].addr_spec == rcpts[0]
            assert msg["Message-ID"] == message_id(rcpts[0], EDITION, "example.org")
    rows = {d.email: d for d in store.deliveries(EDITION)}
    assert {d.status for d in rows.values()} == {"sent"}
    assert rows["reader3@example.net"].message_id == message_id(
        "reader3@example.net", EDITION, "example.org"
    )
    assert store.sent_paper_ids("reader3@example.net") == {"2606.00003", "2606.99999"}


def test_rerun_sends_only_what_was_not_sent(tmp_path: Path, store: Store) -> None:
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv)
        deliver(cfg, store, iter(outgoing(addresses(3))), now=clock)
        second = deliver(cfg, store, iter(outgoing(addresses(5))), now=clock)
        assert sorted(second.already_sent) == addresses(3)
        assert sorted(second.sent) == addresses(2, 3)
        assert sorted(srv.recipients()) == addresses(5)


def test_outgoing_is_consumed_lazily(tmp_path: Path, store: Store) -> None:
    """A generator over many subscribers is not read to the end before sending starts."""
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv)
        seen_at: dict[int, int] = {}

        def stream() -> Iterator[Outgoing]:
            for i, item in enumerate(outgoing(addresses(700))):
                seen_at[i] = len(srv.messages)
                yield item

        summary = deliver(cfg, store, stream(), now=clock)
        assert len(summary.sent) == 700
        assert seen_at[699] > 0  # messages went out before the last subscriber was produced


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_tls_with_private_ca_and_auth(
    tmp_path: Path, store: Store, tls: str, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "right horse battery")
    with SmtpServer(tls=tls, auth=("digest", "right horse battery"), pipelining=True) as srv:
        cfg = make_config(tmp_path, srv, user="digest")
        summary = deliver(cfg, store, iter(outgoing(addresses(3))), now=clock)
        assert sorted(summary.sent) == addresses(3)
        assert srv.logins == [("digest", True)]


def test_untrusted_certificate_stops_the_run_and_never_downgrades(
    tmp_path: Path, store: Store
) -> None:
    with SmtpServer(tls="starttls") as srv:
        cfg = make_config(tmp_path, srv, ca_file="")  # the system CAs do not know the test CA
        with pytest.raises(SendError, match="certificate"):
            deliver(cfg, store, iter(outgoing(addresses(2))), now=clock)
        assert srv.messages == []
    assert {d.status for d in store.deliveries(EDITION)} == {"deferred"}


def test_starttls_required_but_not_offered(tmp_path: Path, store: Store) -> None:
    with SmtpServer(starttls_advertised=False) as srv:
        cfg = make_config(tmp_path, srv, security="starttls")
        with pytest.raises(SendError, match="does not offer STARTTLS") as err:
            deliver(cfg, store, iter(outgoing(addresses(2))), now=clock)
        assert srv.messages == []
    # both ways out are named: TLS on another port, or plain text to a relay of one's own
    assert 'security = "ssl" (port 465)' in str(err.value)
    assert 'security = "none" for a relay on this machine or your own network' in str(err.value)


# -- a peer that is not an SMTP server, and `digest check --smtp` ----------------------------


@pytest.fixture
def silent_peer(httpserver: Any) -> int:
    """A web server: it accepts the connection and waits for a request, greeting no one."""
    return int(httpserver.port)


@pytest.fixture
def chatty_peer() -> Iterator[int]:
    """A server that greets every connection in another protocol (an SSH banner)."""
    sock = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            seen.append(1)
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    sock.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("peer", ["silent_peer", "chatty_peer"])
def test_a_peer_that_is_not_smtp_stops_the_run_at_once(
    tmp_path: Path, store: Store, peer: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(peer)
    cfg = make_config(
        tmp_path,
        host="127.0.0.1",
        port=port,
        security="none",
        timeout=0.3,
        retries=3,
        retry_backoff=30.0,  # a retry would show as a 30 s wait
    )
    started = time.monotonic()
    with pytest.raises(SendError) as err:
        deliver(cfg, store, iter(outgoing(addresses(2))), now=clock)
    assert time.monotonic() - started < 10  # no retries (2 min 16 s before)
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "[smtp] host and port" in message
    if peer == "silent_peer":
        assert "no SMTP greeting within 0.3 s" in message
    else:
        assert "does not speak SMTP (it said '…2.0-OpenSSH_9.2p1 Debian-2')" in message
    assert {d.status for d in store.deliveries(EDITION)} == {"deferred"}


@pytest.mark.parametrize("tls", [None, "starttls", "ssl"])
def test_check_relay_logs_in_and_sends_nothing(
    tmp_path: Path, tls: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = ("digest", "right horse battery") if tls else None
    with SmtpServer(tls=tls, auth=auth) as srv:
        cfg = make_config(tmp_path, srv, user="digest" if tls else "")
        verdict = check_relay(cfg, "right horse battery" if tls else "")
        assert srv.messages == [] and srv.connections == 1
        assert srv.logins == ([("digest", True)] if tls else [])
    assert verdict.startswith(f"localhost:{srv.port}: OK: ")
    assert verdict.endswith("sender digest@example.org accepted; nothing was sent")
    if tls:
        assert f"{tls.upper()} (TLSv1." in verdict and "logged in as digest" in verdict
    else:
        assert 'no TLS (security = "none")' in verdict and "no login" in verdict


def test_check_relay_names_what_failed(tmp_path: Path) -> None:
    with SmtpServer(tls="starttls", auth=("digest", "right")) as srv:
        with pytest.raises(AuthError, match="authentication failed"):
            check_relay(make_config(tmp_path, srv, user="digest"), "wrong")
        with pytest.raises(AuthError, match="requires authentication"):
            check_relay(make_config(tmp_path, srv), "")  # no login: MAIL FROM is refused
        assert srv.messages == []
    with (
        SmtpServer(reject_sender=True) as srv,
        pytest.raises(SendError, match="refused our sender"),
    ):
        check_relay(make_config(tmp_path, srv), "")


def test_auth_failure_stops_at_once_and_nothing_is_marked_sent(
    tmp_path: Path, store: Store, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong-password")
    with SmtpServer(tls="starttls", auth=("digest", "right")) as srv:
        cfg = make_config(tmp_path, srv, user="digest", connections=2)
        started = time.monotonic()
        with pytest.raises(AuthError) as info:
            deliver(cfg, store, iter(outgoing(addresses(50))), now=clock)
        assert time.monotonic() - started < 5
        assert srv.messages == []
        assert srv.connections <= 2  # one attempt per connection, no retry loop
    text = str(info.value)
    assert "authentication failed" in text and "535" in text
    assert "DIGEST_SMTP_PASSWORD" in text and "wrong-password" not in text
    statuses = {d.status for d in store.deliveries(EDITION)}
    assert "sent" not in statuses and "sending" not in statuses


def test_connections_are_reused_up_to_max_per_connection(tmp_path: Path, store: Store) -> None:
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv, max_per_connection=4)
        deliver(cfg, store, iter(outgoing(addresses(10))), now=clock)
        assert len(srv.messages) == 10
        assert srv.connections == 3  # 4 + 4 + 2


def test_parallel_connections_are_faster_against_a_slow_server(
    tmp_path: Path, store: Store
) -> None:
    with SmtpServer(delay=0.2, pipelining=True) as srv:
        cfg = make_config(tmp_path, srv, connections=4)
        started = time.monotonic()
        summary = deliver(cfg, store, iter(outgoing(addresses(12))), now=clock)
        elapsed = time.monotonic() - started
        assert len(summary.sent) == 12
        assert srv.connections == 4
        assert elapsed < 12 * 0.2 * 0.6  # one connection would need at least 2.4 s


def test_rate_per_second_spaces_messages(tmp_path: Path, store: Store) -> None:
    waits: list[float] = []
    starts: list[float] = []  # when each waiting message was to start (monotonic)

    def sleep(seconds: float) -> None:  # does not sleep: each start is then the one planned
        waits.append(seconds)
        starts.append(time.monotonic() + seconds)

    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv, rate_per_second=10.0)
        deliver(cfg, store, iter(outgoing(addresses(10))), now=clock, sleep=sleep)
        assert len(srv.messages) == 10
    # 10 messages at 10/s: each after the first waits for its turn, 0.1 s after the one
    # before (the fake sleep does not advance the clock, so the n-th waits about n/10 s,
    # less the time the run took to get there)
    assert len(waits) == 9
    # (each start is planned after a round trip to the database that books its slot, so a
    # busy machine moves single starts by tens of milliseconds; the spacing is what counts)
    assert all(abs(b - a - 0.1) < 0.045 for a, b in itertools.pairwise(starts))
    assert abs(starts[-1] - starts[0] - 0.8) < 0.05
    assert 0.5 < waits[-1] <= 0.9 + 1e-6


def test_rate_per_hour_counts_earlier_runs(tmp_path: Path, store: Store) -> None:
    waits: list[float] = []
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv, rate_per_hour=3)
        deliver(cfg, store, iter(outgoing(addresses(2))), now=clock, sleep=waits.append)
        assert waits == []
        deliver(cfg, store, iter(outgoing(addresses(3, 2))), now=clock, sleep=waits.append)
    # 2 sent earlier this hour + 1 now fill the window; the next two must wait about an hour
    assert len(waits) == 2 and all(3500 < w <= 3600 for w in waits)


@pytest.mark.parametrize("direct", [True, False], ids=["driver", "sqlalchemy"])
def test_delivery_writer_paths_store_the_same_rows(db_url: str, direct: bool) -> None:
    """The send path writes outcomes straight through the driver (sqlite3 on SQLite,
    psycopg on PostgreSQL), and through SQLAlchemy on any other database; every path
    leaves the same log behind."""
    store = Store(db_url)
    later = NOW + timedelta(minutes=5)
    claim = {"limit": 3, "gave_up": "given up"}
    try:
        with store.delivery_writer(direct=direct) as w:
            items = [("a@example.org", EDITION, "<a>"), ("b@example.org", EDITION, "<b>")]
            assert set(w.claim(items, "run#1", NOW, later, **claim)) == {
                ("a@example.org", EDITION),
                ("b@example.org", EDITION),
            }
            assert w.statuses(EDITION, ["a@example.org", "b@example.org", "c@example.org"]) == {
                "a@example.org": "sending",
                "b@example.org": "sending",
            }
            a_try = [("a@example.org", EDITION, "run#1", 1, 0)]
            assert w.commit([], a_try, NOW, later) == (0, set())
            sent = ("a@example.org", EDITION, "run#1", "sent", "250 ok", ("p1", "p2", "p1"), 1, 0)
            failed = ("b@example.org", EDITION, "run#1", "failed", "550 " + "x" * 2000, (), 1, 0)
            assert w.commit([sent], [], NOW, later) == (1, set())
            assert w.commit([failed], [], NOW, later) == (1, set())
            # A rerun of the same edition takes the failed "b" again, never the sent "a"; a
            # finish or a try naming the old claim changes nothing.
            assert set(w.claim(items, "run#2", NOW, later, **claim)) == {items[1][:2]}
            b_try = [("b@example.org", EDITION, "run#1", 2, 0)]
            assert w.commit([failed], b_try, NOW, later) == (0, {("b@example.org", EDITION)})
            again = ("b@example.org", EDITION, "run#2", "sent", "250 again", ("p2", "p3"), 2, 0)
            assert w.commit([again], [], NOW, later) == (1, set())
        rows = {d.email: d for d in store.deliveries(EDITION)}
        assert (rows["a@example.org"].status, rows["a@example.org"].reply) == ("sent", "250 ok")
        assert rows["a@example.org"].message_id == "<a>"
        assert (rows["b@example.org"].status, rows["b@example.org"].reply) == ("sent", "250 again")
        assert store.sent_paper_ids("a@example.org") == {"p1", "p2"}
        assert store.sent_paper_ids("b@example.org") == {"p2", "p3"}
        assert store.sent_since(NOW - timedelta(minutes=1)) == [NOW, NOW]
    finally:
        store.close()


@pytest.mark.parametrize("connections", [1, 3])
def test_stop_finishes_the_messages_in_flight_and_leaves_the_rest_pending(
    tmp_path: Path, store: Store, connections: int
) -> None:
    emails = addresses(40)
    stop = threading.Event()
    with SmtpServer(pipelining=True) as srv:

        def clock() -> datetime:  # SIGTERM arrives once the server has two messages
            if len(srv.messages) >= 2:
                stop.set()
            return NOW

        cfg = make_config(tmp_path, srv, connections=connections)
        first = deliver(cfg, store, outgoing(emails), now=clock, stop=stop)
        assert 2 <= len(first.sent) <= 2 + connections
        assert first.failed == [] and first.deferred == []
        assert sorted(first.sent + first.stopped) == sorted(
            emails[: len(first.sent + first.stopped)]
        )
        assert set(statuses_of(store).values()) <= {"sent", "pending"}
        second = deliver(cfg, store, outgoing(emails), now=clock)
        assert sorted(first.sent + second.sent) == sorted(emails)
        assert Counter(srv.recipients()) == dict.fromkeys(emails, 1)  # nothing twice


def test_stop_interrupts_a_rate_limit_wait(tmp_path: Path, store: Store) -> None:
    """With the real clock, a run waiting for its hourly budget stops at once on SIGTERM."""
    stop = threading.Event()
    with SmtpServer() as srv:
        cfg = make_config(tmp_path, srv, rate_per_hour=2)
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        summary = deliver(cfg, store, outgoing(addresses(4)), now=clock, stop=stop)
        assert time.monotonic() - started < 5
    assert len(summary.sent) == 2 and sorted(summary.stopped) == addresses(2, 2)
