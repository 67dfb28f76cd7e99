"""Header values: addresses, Message-ID, the signed unsubscribe URL, RFC 2047 and folding.

Every value that reaches a header goes through ``clean`` first (control characters
become spaces), so nothing from a feed or a subscriber file can add a header.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from email.utils import formataddr
from urllib.parse import quote, urlsplit

from ..config import Config
from ..errors import ConfigError, SendError
from ..tokens import UNSUBSCRIBE, Tokens

CRLF = "\r\n"
MAX_LINE = 78  # RFC 5322: SHOULD be at most 78 characters (MUST be at most 998)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+$")


def clean(value: str) -> str:
    """One header-safe line: control characters (CR, LF, NUL, tabs...) become a space."""
    return " ".join(_CONTROL.sub(" ", value).split())


def check_address(address: str) -> str:
    """Refuse anything that is not a single bare address (header and SMTP injection)."""
    if not _ADDRESS.match(address) or len(address) > 254:
        raise SendError(
            f"{address!r}: not a single email address; fix the subscriber file "
            "(digest check lists the problems)"
        )
    return address


def ascii_address(address: str) -> str:
    """The address as it goes on the wire: the domain in IDNA (punycode) form.

    A non-ASCII local part would need SMTPUTF8 (RFC 6531), which we do not send."""
    check_address(address)
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise SendError(
            f"{address}: a non-ASCII mailbox name needs SMTPUTF8, which digest does not "
            "use; give an ASCII address for this subscriber"
        )
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise SendError(f"{address}: the domain is not a valid IDN ({exc})") from exc


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def message_id(email: str, edition: date, domain: str) -> str:
    """Deterministic per (subscriber, edition), so a resend carries the same id."""
    key = f"{email.strip().lower()}\0{edition.isoformat()}".encode()
    digest = hashlib.sha256(key).hexdigest()[:32]
    return f"<{edition:%Y%m%d}.{digest}@{clean(domain).lower()}>"


def unsubscribe_secret(cfg: Config) -> bytes:
    """The secret signing the links (see ``Config.link_secret``)."""
    return cfg.link_secret()


def check_unsubscribe_token(cfg: Config, email: str, token: object) -> bool:
    """True when ``token`` unsubscribes ``email``: the one ``unsubscribe_url`` puts in
    their link, or one from a link made before purpose-bound tokens. Never raises."""
    return cfg.link_tokens().valid_unsubscribe(token, email)


def unsubscribe_base(cfg: Config) -> str:
    """``[unsubscribe] url``, or the web app's own page when ``[web] base_url`` is set."""
    url = clean(cfg.unsubscribe.url) or cfg.web_url("/unsubscribe")
    if not url:
        return ""
    parts = urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (parts.scheme != "https" and not loopback) or not parts.netloc:
        raise ConfigError(
            f"{cfg.path}: [unsubscribe] url {url!r} must be an https:// URL "
            "(RFC 8058 one-click unsubscribe needs https)"
        )
    return url


_SIGNED: dict[tuple[str, Tokens, str], str] = {}  # the last URLs made: a run makes each twice


def signed_url(base: str, tokens: Tokens, email: str) -> str:
    """``base`` with the subscriber's address and token (see ``unsubscribe_url``); the
    run makes each subscriber's URL for the body and again for the headers, so the last
    few thousand are remembered."""
    key = (base, tokens, email)
    url = _SIGNED.get(key)
    if url is None:
        if len(_SIGNED) >= 4096:
            _SIGNED.clear()
        url = _SIGNED[key] = _signed_url(base, tokens, email)
    return url


def _signed_url(base: str, tokens: Tokens, email: str) -> str:
    token = tokens.make(UNSUBSCRIBE, email)
    address = quote(email, safe="@")
    if "{email}" in base or "{token}" in base:
        return base.replace("{email}", address).replace("{token}", token)
    sep = "&" if "?" in base else "?"
    # "e", not "email": an "email=" parameter in a link scores +1.0 in SpamAssassin.
    return f"{base}{sep}e={address}&token={token}"


def unsubscribe_url(cfg: Config, email: str) -> str:
    """The subscriber's https one-click unsubscribe URL, or "" when not configured.

    ``[unsubscribe] url`` may hold ``{email}`` and ``{token}`` placeholders; otherwise
    ``e=`` (the address) and ``token=`` query parameters are appended.
    """
    base = unsubscribe_base(cfg)
    if not base:
        return ""
    return signed_url(base, cfg.link_tokens(), email)


def phrase(name: str) -> str:
    """A display name for List-Id: quoted, or RFC 2047 encoded when not ASCII."""
    name = clean(name)[:100]
    if not name:
        return ""
    if not name.isascii():
        return f"{CRLF} ".join(_encoded_words(name, MAX_LINE - len("List-Id: ")))
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_EW_MAX = 75  # RFC 2047: an encoded-word is at most 75 characters


def _q(text: str) -> str:
    return "".join(
        chr(b) if b in _Q_SAFE else "_" if b == 32 else f"={b:02X}" for b in text.encode()
    )


def _encoded_words(text: str, first: int) -> list[str]:
    """``text`` as RFC 2047 Q encoded-words of at most 75 characters, split after a space
    where possible and never inside a character; each space stays inside the word before
    it, so decoders rejoin the text exactly. ``first`` is the room on the first line."""
    chunks: list[str] = []
    room = min(first, _EW_MAX) - 12  # "=?utf-8?q?" + "?="
    current = ""
    for ch in text:
        enc = _q(ch)
        if len(current) + len(enc) > room and current:
            cut = current.rfind("_") + 1
            if cut <= 0 or cut == len(current):
                cut = len(current)
            chunks.append(current[:cut])
            current = current[cut:]
            room = _EW_MAX - 12
        current += enc
    chunks.append(current)
    return [f"=?utf-8?q?{c}?=" for c in chunks]


def _fold_ascii(name: str, value: str) -> str:
    """``Name: value`` folded at spaces to 78 columns where the words allow it."""
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > MAX_LINE and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return CRLF.join(lines)


def fold_header(name: str, value: str) -> str:
    """``Name: value`` folded to 78 columns, RFC 2047-encoded when not ASCII."""
    value = clean(value)
    if value.isascii():
        return _fold_ascii(name, value)
    words = _encoded_words(value, MAX_LINE - len(name) - 2)
    return f"{name}: " + f"{CRLF} ".join(words)


_PHRASES: dict[str, tuple[str, str]] = {}  # display name -> (cleaned, as formataddr writes it)


def _phrase_of(display: str) -> tuple[str, str]:
    found = _PHRASES.get(display)
    if found is None:
        cleaned = clean(display)[:100]
        written = formataddr((cleaned, "a@b"), charset="utf-8")[: -len(" <a@b>")] if cleaned else ""
        if len(_PHRASES) >= 4096:
            _PHRASES.clear()
        found = _PHRASES[display] = (cleaned, written)
    return found


def address_header(name: str, display: str, address: str) -> str:
    """``Name: display <address>``, the display name quoted or RFC 2047-encoded, folded."""
    address.encode("ascii")  # as formataddr checks
    display, written = _phrase_of(display)
    line = f"{name}: {written} <{address}>" if display else f"{name}: {address}"
    if len(line) <= MAX_LINE or not display:
        return line
    words = _encoded_words(display, MAX_LINE - len(name) - 2)
    return f"{name}: " + f"{CRLF} ".join(words) + f"{CRLF} <{address}>"
