"""DKIM: every message is signed over the headers receivers check; verified with the public key."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.config import Dkim
from digest.delivery import build_message, config_notes, deliver
from digest.errors import ConfigError
from digest.models import Profile
from digest.store import Store
from tests.smtpserver import SmtpServer
from tests.test_send import EDITION, NOW, addresses, clock, make_config, outgoing, rendered

SIGNED = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "s3cret-for-tests-only")


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(private key PEM file, the DNS TXT record publishing its public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dns(record: bytes) -> object:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.example.org." else None

    return lookup


def dkim_config(tmp_path: Path, key: Path, srv: SmtpServer | None = None):  # type: ignore[no-untyped-def]
    d = Dkim(selector="mail2026", domain="example.org", private_key_file=str(key))
    return make_config(tmp_path, srv, dkim=d)


def signed_headers(raw: bytes) -> set[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    sig = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", head + "\r\nX:", re.S | re.M)
    assert sig is not None
    tags = dict(
        t.strip().split("=", 1) for t in "".join(sig.group(1).split()).split(";") if t.strip()
    )
    return {h.lower() for h in tags["h"].split(":")}


def test_message_is_signed_and_verifies(tmp_path: Path, keypair: tuple[Path, bytes]) -> None:
    key, record = keypair
    cfg = dkim_config(tmp_path, key)
    raw = build_message(
        cfg, Profile(email="ada@example.org", name="Ada"), EDITION, rendered(), now=NOW
    )
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns(record))
    assert signed_headers(raw) >= SIGNED
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: Your papers", b"Subject: Our papers"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: No"),
        (b"To: Ada <ada@example.org>", b"To: Ada <eve@example.org>"),
        (b"Hi Ada,", b"Hi Eve,"),  # the body
    ],
)
def test_tampering_breaks_the_signature(
    tmp_path: Path, keypair: tuple[Path, bytes], old: bytes, new: bytes
) -> None:
    key, record = keypair
    raw = build_message(
        dkim_config(tmp_path, key),
        Profile(email="ada@example.org", name="Ada"),
        EDITION,
        rendered(),
        now=NOW,
    )
    assert old in raw
    assert not dkim.verify(raw.replace(old, new, 1), dnsfunc=dns(record))


def test_messages_received_over_smtp_verify(tmp_path: Path, keypair: tuple[Path, bytes]) -> None:
    key, record = keypair
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    try:
        with SmtpServer(pipelining=True) as srv:
            summary = deliver(
                dkim_config(tmp_path, key, srv), store, outgoing(addresses(3)), now=clock
            )
            assert len(summary.sent) == 3
            for _, _, raw in srv.messages:
                assert dkim.verify(raw, dnsfunc=dns(record))
    finally:
        store.close()


def test_signing_without_cryptography_falls_back_to_dkimpy(
    tmp_path: Path, keypair: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, record = keypair
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    raw = build_message(
        dkim_config(tmp_path, key), Profile(email="a@example.org"), EDITION, rendered(), now=NOW
    )
    monkeypatch.undo()
    assert dkim.verify(raw, dnsfunc=dns(record))


def test_incomplete_or_broken_dkim_config_is_refused(tmp_path: Path) -> None:
    profile = Profile(email="a@example.org")
    half = make_config(tmp_path, dkim=Dkim(selector="s1", domain="example.org"))
    with pytest.raises(ConfigError, match=r"\[dkim\] needs selector, domain and private_key_file"):
        build_message(half, profile, EDITION, rendered(), now=NOW)
    missing = make_config(
        tmp_path, dkim=Dkim(selector="s1", domain="example.org", private_key_file="nope.pem")
    )
    with pytest.raises(ConfigError, match="cannot read"):
        build_message(missing, profile, EDITION, rendered(), now=NOW)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    broken = make_config(
        tmp_path, dkim=Dkim(selector="s1", domain="example.org", private_key_file=str(junk))
    )
    with pytest.raises(ConfigError, match="not a usable RSA private key"):
        build_message(broken, profile, EDITION, rendered(), now=NOW)


def test_without_dkim_config_nothing_is_signed(tmp_path: Path) -> None:
    raw = build_message(
        make_config(tmp_path), Profile(email="a@example.org"), EDITION, rendered(), now=NOW
    )
    assert b"DKIM-Signature" not in raw


def test_a_dkim_domain_that_does_not_align_with_from_is_reported(
    tmp_path: Path, keypair: tuple[Path, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = keypair
    d = Dkim(selector="s1", domain="other.example", private_key_file=str(key))
    cfg = make_config(tmp_path, dkim=d)
    build_message(cfg, Profile(email="a@example.org"), EDITION, rendered(), now=NOW)
    assert caplog.text == ""  # `digest check` says it, not every message
    (note,) = config_notes(cfg)
    assert "[dkim] domain other.example is not the From domain example.org" in note
    assert "will not align for DMARC" in note
    assert config_notes(dkim_config(tmp_path, key)) == []
