"""Signed links: bound to purpose, list, address and scope; expiring where asked; a
malformed token is simply invalid; links from before keep unsubscribing; weak secrets
are refused by `digest check`."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import load
from digest.delivery import check_unsubscribe_token, unsubscribe_url
from digest.tokens import (
    CONFIRM,
    MANAGE,
    UNSUBSCRIBE,
    VIEW,
    VOTE,
    Tokens,
    estimate_bits,
    legacy_unsubscribe_token,
    secret_problem,
)
from tests.conftest import write_config

SECRET = b"k3Jx9-q2LmZ0aVb7TcWd1YpR5sNe8HfUo4GiKzQ_wEr"
NOW = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)
T = Tokens(SECRET, "digest.example.org")


def test_a_token_grants_one_purpose_for_one_address_on_one_list() -> None:
    tok = T.make(MANAGE, "Ada@Example.org")
    assert T.valid(tok, MANAGE, "ada@example.org")  # case of the address does not matter
    assert not T.valid(tok, UNSUBSCRIBE, "ada@example.org")
    assert not T.valid(tok, MANAGE, "bob@example.org")
    assert not Tokens(SECRET, "other.example.org").valid(tok, MANAGE, "ada@example.org")
    assert not Tokens(b"another-secret" * 4, "digest.example.org").valid(
        tok, MANAGE, "ada@example.org"
    )


def test_scope_binds_an_edition() -> None:
    tok = T.make(VIEW, "ada@example.org", scope="2026-06-12")
    assert T.valid(tok, VIEW, "ada@example.org", scope="2026-06-12")
    assert not T.valid(tok, VIEW, "ada@example.org", scope="2026-06-13")
    assert not T.valid(tok, VOTE, "ada@example.org", scope="2026-06-12")


def test_expiring_tokens_expire_and_the_others_do_not_pass_for_them() -> None:
    tok = T.make(CONFIRM, "ada@example.org", scope="p1", issued=NOW)
    day2 = timedelta(hours=48)
    assert T.valid(tok, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=NOW)
    at = NOW + timedelta(hours=47)
    assert T.valid(tok, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=at)
    at = NOW + timedelta(hours=48, seconds=1)
    assert not T.valid(tok, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=at)
    at = NOW - timedelta(hours=1)  # from the future
    assert not T.valid(tok, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=at)
    # An expiring token is no lifetime token, and a lifetime token is no expiring one.
    assert not T.valid(tok, CONFIRM, "ada@example.org", scope="p1")
    forever = T.make(CONFIRM, "ada@example.org", scope="p1")
    assert not T.valid(forever, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=NOW)
    # The stamp is signed: moving it forward breaks the token.
    sig = tok.partition(".")[2]
    later = T.make(CONFIRM, "ada@example.org", scope="p1", issued=NOW + timedelta(days=30))
    forged = later.partition(".")[0] + "." + sig
    assert not T.valid(forged, CONFIRM, "ada@example.org", scope="p1", max_age=day2, now=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "é" * 22,
        "é" * 43,
        "",
        None,
        42,
        b"bytes",
        "a" * 10_000,
        "!!!!!!!!!!!!!!!!!!!!!!",
        "....",
        "\x00" * 43,
        "a.b",
        "ab" * 11,
    ],
)
def test_a_malformed_token_is_just_invalid(bad: object) -> None:
    assert not T.valid(bad, MANAGE, "ada@example.org")
    assert not T.valid(bad, CONFIRM, "ada@example.org", max_age=timedelta(days=2), now=NOW)
    assert not T.valid_unsubscribe(bad, "ada@example.org")


def test_no_string_makes_checking_raise() -> None:
    rng = random.Random(15)
    alphabets = ["abcXYZ019-_.", "é\x00\u2028 .=/+%", "".join(map(chr, range(32, 127)))]
    good = T.make(CONFIRM, "ada@example.org", issued=NOW)
    for n in range(600):
        chars = alphabets[n % 3]
        token = "".join(rng.choice(chars) for _ in range(rng.randint(0, 90)))
        if n % 5 == 0:  # near misses: a real token with one character changed
            i = rng.randrange(len(good))
            token = good[:i] + rng.choice(chars) + good[i + 1 :]
            if token == good:
                continue
        assert not T.valid(token, MANAGE, "ada@example.org")
        assert not T.valid_unsubscribe(token, "ada@example.org")
        assert not T.valid(token, CONFIRM, "ada@example.org", max_age=timedelta(days=2), now=NOW)


def test_links_in_mail_already_sent_still_unsubscribe_and_do_nothing_else() -> None:
    old = legacy_unsubscribe_token(SECRET, "ada@example.org")
    assert len(old) == 22
    assert T.valid_unsubscribe(old, "ada@example.org")
    assert T.valid_unsubscribe(T.make(UNSUBSCRIBE, "ada@example.org"), "ada@example.org")
    assert not T.valid_unsubscribe(old, "bob@example.org")
    assert not T.valid(old, MANAGE, "ada@example.org")
    assert not T.valid_unsubscribe(T.make(MANAGE, "ada@example.org"), "ada@example.org")


def test_the_link_of_a_message_sent_before_signed_links_still_unsubscribes() -> None:
    """A link as the code before these tokens signed it, taken from a message it sent (the
    saved ada-8.eml, signed with the secret "tests-only-secret"):
    https://digest.example.org/unsubscribe?e=ada@example.org&token=nUUNRxI1rke6Ixx2wEJxpg"""
    sent = "nUUNRxI1rke6Ixx2wEJxpg"
    then = Tokens(b"tests-only-secret", "digest.example.org")
    assert legacy_unsubscribe_token(b"tests-only-secret", "ada@example.org") == sent
    assert then.valid_unsubscribe(sent, "ada@example.org")
    assert not then.valid_unsubscribe(sent, "bob@example.org")
    assert not then.valid(sent, MANAGE, "ada@example.org")
    # what the README says breaks it: another secret
    assert not Tokens(SECRET, "digest.example.org").valid_unsubscribe(sent, "ada@example.org")


def test_csrf_token_is_bound_to_the_link_that_opened_the_page() -> None:
    link = T.make(MANAGE, "ada@example.org")
    csrf = T.csrf(MANAGE, link, "ada@example.org")
    assert T.valid_csrf(csrf, MANAGE, link, "ada@example.org")
    other = T.make(UNSUBSCRIBE, "ada@example.org")
    assert not T.valid_csrf(csrf, UNSUBSCRIBE, other, "ada@example.org")
    assert not T.valid_csrf(csrf, MANAGE, link, "bob@example.org")
    assert not T.valid_csrf(link, MANAGE, link, "ada@example.org")


def test_the_secret_never_shows() -> None:
    assert SECRET.decode() not in repr(T)
    assert SECRET.decode() not in T.make(MANAGE, "ada@example.org")


@pytest.mark.parametrize(
    ("secret", "ok"),
    [
        ("a", False),
        ("demo-only-not-secret", False),
        ("x" * 300, False),
        ("ab" * 100, False),
        ("0123456789abcdef" * 8, False),
        (secrets.token_urlsafe(32), True),
        (secrets.token_hex(32), True),
        (secrets.token_urlsafe(24), True),
    ],
)
def test_weak_secrets_are_refused(secret: str, ok: bool) -> None:
    assert (secret_problem(secret) is None) is ok, estimate_bits(secret)
    if not ok:
        assert "secrets.token_urlsafe" in (secret_problem(secret) or "")


def _check(config: Path, secret: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DIGEST_UNSUBSCRIBE_SECRET": secret}
    return subprocess.run(
        [sys.executable, "-m", "digest", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_digest_check_refuses_a_weak_secret_and_says_how_to_make_one(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '[unsubscribe]\nurl = "https://papers.example.org/unsubscribe"\n'
    )
    weak = _check(config, "a")
    assert weak.returncode == 2, weak.stderr
    assert "DIGEST_UNSUBSCRIBE_SECRET" in weak.stderr
    assert "secrets.token_urlsafe(32)" in weak.stderr
    assert "a" * 2 not in weak.stderr.split("secret")[-1][:3]
    strong = _check(config, secrets.token_urlsafe(32))
    assert strong.returncode == 1, strong.stderr  # the secret is fine: nobody to send to
    assert "no subscriber in" in strong.stderr and "DIGEST_UNSUBSCRIBE_SECRET: set" in strong.stdout


def test_unsubscribe_url_defaults_to_the_web_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET.decode())
    cfg = load(write_config(tmp_path, '[web]\nbase_url = "http://127.0.0.1:8080/"\n'))
    url = unsubscribe_url(cfg, "ada@example.org")
    assert url.startswith("http://127.0.0.1:8080/unsubscribe?e=ada@example.org&token=")
    token = url.rsplit("=", 1)[1]
    assert check_unsubscribe_token(cfg, "ada@example.org", token)
    assert not check_unsubscribe_token(cfg, "ada@example.org", "é" * 22)


@pytest.mark.parametrize(
    "url", ["http://papers.example.org", "ftp://x.example.org", "https://x.example.org/?a=1"]
)
def test_web_base_url_must_be_https_but_on_loopback(tmp_path: Path, url: str) -> None:
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url"):
        load(write_config(tmp_path, f'[web]\nbase_url = "{url}"\n'))
