"""Signed tokens for the links in a digest and on the web: unsubscribe, preferences, view
in browser, votes, confirming a subscription, and the CSRF token of each page's form.

A token is an HMAC-SHA256 (itsdangerous) of what it grants: its *purpose*, the *list*
(the List-Id label, so two lists sharing a secret do not share links), the *address*
and a *scope* where one applies (the edition of a "view in browser" or vote link, the
pending subscription of a confirm link). A token for one purpose is worthless for any
other, and one person's link never works for another address. Tokens that expire
carry the moment they were made (``issued``), signed with the rest.

Checking is constant-time, and anything that is not a well-formed token (wrong type,
non-ASCII, too long, bad base64) is simply invalid: ``valid`` returns False, it never
raises. Unsubscribe links made before these tokens (an HMAC of the address alone, 22
characters) are still honoured for unsubscribing, and for nothing else, so mail already
sent keeps working.

The secret must be long and random: ``secret_problem`` estimates its entropy from its
length and alphabet and refuses anything under 128 bits (``digest check`` says so).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes

__all__ = [
    "CONFIRM",
    "CSRF",
    "ERASED",
    "FORM",
    "MANAGE",
    "NEW_SECRET_HINT",
    "RATE",
    "SECRET_BITS",
    "UNSUBSCRIBE",
    "VIEW",
    "VOTE",
    "Tokens",
    "estimate_bits",
    "legacy_unsubscribe_token",
    "secret_problem",
]

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"  # the preferences page, and what it does (export, erase, pause)
VIEW = "view"  # one digest as sent: scope = the edition
VOTE = "vote"  # "more / less like this" on a paper of one digest: scope = the edition
CONFIRM = "confirm"  # a pending subscription: scope = its id; expires, used once
CSRF = "csrf"  # a form's token: scope = the purpose and token of the page's signed link
FORM = "form"  # the sign-up form's token (no signed link opens it): made when shown, expires
# Not links: keyed hashes of an address. ERASED: what an erased address leaves behind (a
# suppression no one can read the address from); RATE: a rate-limit counter's key.
ERASED = "erased"
RATE = "rate"

SECRET_BITS = 128
NEW_SECRET_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

_WELL_FORMED = re.compile(r"(?:[A-Za-z0-9_\-]{1,12}\.)?[A-Za-z0-9_\-]{16,64}")
_SEP = "\x1f"  # between the signed fields: no address, list label or scope contains it


class Tokens:
    """Makes and checks the tokens of one list (its label) under one secret."""

    def __init__(self, secret: bytes, list_id: str) -> None:
        self._secret = secret
        self._list = list_id
        signer = Signer(
            secret, salt=b"digest.tokens.v2", key_derivation="hmac", digest_method=hashlib.sha256
        )
        # The derived key is the same for every token: made once, not once per token (a
        # run signs a few links for every subscriber).
        self._key = signer.derive_key()
        self._algorithm = signer.algorithm

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tokens)
            and hmac.compare_digest(self._secret, other._secret)
            and self._list == other._list
        )

    def __hash__(self) -> int:
        return hash((self._secret, self._list))

    def __repr__(self) -> str:  # never the secret
        return f"Tokens(list={self._list!r})"

    def _value(self, purpose: str, email: str, scope: str, issued: str) -> bytes:
        fields = (purpose, self._list, email.strip().lower(), scope, issued)
        return _SEP.join(fields).encode("utf-8", "surrogatepass")

    def make(
        self, purpose: str, email: str, *, scope: str = "", issued: datetime | None = None
    ) -> str:
        """A URL-safe token granting ``purpose`` for ``email`` (and ``scope``). With
        ``issued``, the token carries that moment and ``valid(max_age=...)`` can expire it."""
        stamp = ""
        if issued is not None:
            stamp = base64_encode(int_to_bytes(int(issued.timestamp()))).decode()
        mac = self._algorithm.get_signature(self._key, self._value(purpose, email, scope, stamp))
        sig = base64_encode(mac).decode()
        return f"{stamp}.{sig}" if stamp else sig

    def valid(
        self,
        token: object,
        purpose: str,
        email: str,
        *,
        scope: str = "",
        max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> bool:
        """True when ``token`` is one ``make`` gave for the same purpose, list, address and
        scope (and, with ``max_age``, made at most that long before ``now``). A token made
        with ``issued`` is only accepted where ``max_age`` is given, and the other way round."""
        if not isinstance(token, str) or not token.isascii() or not _WELL_FORMED.fullmatch(token):
            return False
        stamp, _, sig = token.rpartition(".")
        if (max_age is None) != (stamp == ""):
            return False
        try:
            value = self._value(purpose, email, scope, stamp)
            # itsdangerous compares in constant time (hmac.compare_digest)
            if not self._algorithm.verify_signature(self._key, value, base64_decode(sig)):
                return False
            if max_age is not None:
                made = datetime.fromtimestamp(bytes_to_int(base64_decode(stamp)), UTC)
                moment = now or datetime.now(UTC)
                if not (made - timedelta(minutes=5) <= moment <= made + max_age):
                    return False
        except (BadData, ValueError, OverflowError, OSError):
            return False
        return True

    def valid_unsubscribe(self, token: object, email: str) -> bool:
        """An unsubscribe link's token: this list's, or one made before purpose-bound tokens
        (an HMAC of the address alone), so links in mail already sent keep working."""
        if self.valid(token, UNSUBSCRIBE, email):
            return True
        if not isinstance(token, str) or len(token) != 22 or not token.isascii():
            return False
        expected = legacy_unsubscribe_token(self._secret, email).encode()
        return hmac.compare_digest(expected, token.encode())

    def csrf(self, link_purpose: str, link_token: str, email: str) -> str:
        """The token a page's form must send back: bound to the signed link that opened it."""
        return self.make(CSRF, email, scope=f"{link_purpose}:{link_token}")

    def valid_csrf(self, token: object, link_purpose: str, link_token: str, email: str) -> bool:
        return self.valid(token, CSRF, email, scope=f"{link_purpose}:{link_token}")


def legacy_unsubscribe_token(secret: bytes, email: str) -> str:
    """The token unsubscribe links carried before: HMAC-SHA256 of the lower-cased address,
    base64url of its first 16 bytes (22 characters). Only checked, no longer made."""
    mac = hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()


def estimate_bits(secret: str) -> float:
    """A cautious guess of a secret's entropy: its length times the bits per character of
    the alphabet it draws on (hex, letters, digits, symbols), and no more than its length
    times the information its characters actually carry (so "aaaa..." or "abab..." are
    weak however long)."""
    if not secret:
        return 0.0
    hexdigits = set("0123456789abcdef")
    chars = set(secret)
    if chars <= hexdigits or chars <= set("0123456789ABCDEF"):
        pool = 16
    else:
        pool = 0
        pool += 10 if chars & set("0123456789") else 0
        pool += 26 if any(c.islower() for c in chars) else 0
        pool += 26 if any(c.isupper() for c in chars) else 0
        pool += 33 if any(not c.isalnum() for c in chars) else 0
        pool = max(pool, 2)
    n = len(secret)
    counts = Counter(secret)
    shannon = -sum(c / n * math.log2(c / n) for c in counts.values())
    # A random string of n characters shows at most log2(n) bits per character: give
    # short random secrets their due by comparing with what random would show.
    ceiling = min(math.log2(pool), math.log2(n)) if n > 1 else 0.0
    per_char = math.log2(pool) if shannon >= 0.7 * ceiling else shannon
    # Nor more than what is left once repetitions are squeezed out: raw deflate with its
    # fixed code spends about a byte per character it cannot find earlier in the string
    # (with some slack: it finds chance repeats of three characters in random strings too).
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_FIXED)
    left = len(squeeze.compress(secret.encode()) + squeeze.flush())
    return min(n * per_char, 1.15 * max(left - 1, 0) * math.log2(pool))


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is unfit to sign links, or None when it is fit."""
    bits = estimate_bits(secret)
    if bits < SECRET_BITS:
        return (
            f"is too weak to sign links (about {bits:.0f} bits; at least {SECRET_BITS} "
            f"needed); {NEW_SECRET_HINT}"
        )
    return None
