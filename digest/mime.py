"""Building the raw message bytes: headers, multipart/alternative body, DKIM signature.

Messages are assembled by hand rather than with ``email.message.EmailMessage``: the
per-sender parts (From, List-Id, List-Unsubscribe base, DKIM key) are prepared once per
run by a ``Composer``, and each message costs two quoted-printable encodings and a few
string joins. Every value that reaches a header is stripped of control characters first,
so nothing from a feed or a subscriber file can add a header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import format_datetime, formataddr
from pathlib import Path
from urllib.parse import quote, urlsplit

from .config import Config
from .errors import ConfigError, SendError
from .models import Profile, Rendered

log = logging.getLogger(__name__)

CRLF = "\r\n"
MAX_LINE = 78  # RFC 5322: SHOULD be at most 78 characters (MUST be at most 998)
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)
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
    env = cfg.unsubscribe.secret_env
    value = os.environ.get(env, "") if env else ""
    if not value:
        raise ConfigError(
            f"{cfg.path}: [unsubscribe] url is set but environment variable "
            f"{env or '(none)'} is empty; export a long random secret there"
        )
    return value.encode()


def unsubscribe_token(secret: bytes, email: str) -> str:
    """HMAC-SHA256 of the lower-cased address, base64url without padding (22 chars)."""
    mac = hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()


def check_unsubscribe_token(cfg: Config, email: str, token: str) -> bool:
    """True when ``token`` is the one ``unsubscribe_url`` puts in this subscriber's link."""
    expected = unsubscribe_token(unsubscribe_secret(cfg), email)
    return hmac.compare_digest(expected, token)


def _unsubscribe_base(cfg: Config) -> str:
    url = clean(cfg.unsubscribe.url)
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigError(
            f"{cfg.path}: [unsubscribe] url {url!r} must be an https:// URL "
            "(RFC 8058 one-click unsubscribe needs https)"
        )
    return url


def _signed_url(base: str, secret: bytes, email: str) -> str:
    token = unsubscribe_token(secret, email)
    address = quote(email, safe="@")
    if "{email}" in base or "{token}" in base:
        return base.replace("{email}", address).replace("{token}", token)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}email={address}&token={token}"


def unsubscribe_url(cfg: Config, email: str) -> str:
    """The subscriber's https one-click unsubscribe URL, or "" when not configured.

    ``[unsubscribe] url`` may hold ``{email}`` and ``{token}`` placeholders; otherwise
    ``email=`` and ``token=`` query parameters are appended.
    """
    base = _unsubscribe_base(cfg)
    if not base:
        return ""
    return _signed_url(base, unsubscribe_secret(cfg), email)


def _phrase(name: str) -> str:
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


def _fold_header(name: str, value: str) -> str:
    """``Name: value`` folded to 78 columns, RFC 2047-encoded when not ASCII."""
    value = clean(value)
    if value.isascii():
        return _fold_ascii(name, value)
    words = _encoded_words(value, MAX_LINE - len(name) - 2)
    return f"{name}: " + f"{CRLF} ".join(words)


def _address_header(name: str, display: str, address: str) -> str:
    """``Name: display <address>``, the display name quoted or RFC 2047-encoded, folded."""
    display = clean(display)[:100]
    line = f"{name}: {formataddr((display, address), charset='utf-8')}"
    if len(line) <= MAX_LINE or not display:
        return line
    words = _encoded_words(display, MAX_LINE - len(name) - 2)
    return f"{name}: " + f"{CRLF} ".join(words) + f"{CRLF} <{address}>"


def _qp_line(line: str) -> bytes:
    """One line (without its line end) as quoted-printable, CRLF-terminated, at most 78
    columns; a leading "." is written "=2E" so SMTP never needs dot-stuffing."""
    qp = binascii.b2a_qp(line.encode("utf-8", "replace") + b"\r\n")
    if qp.startswith(b"."):
        qp = b"=2E" + qp[1:]
    return qp.replace(b"\r\n.", b"\r\n=2E") if b"\n." in qp else qp


class QpEncoder:
    """Quoted-printable bodies, encoded line by line through a cache.

    Digests to different subscribers share most of their lines (layout, styles, the
    cards of the papers they have in common), so most lines are encoded once per run
    rather than once per message. Two generations bound the memory (about twice
    ``limit`` bytes of text): when the young one is full it becomes the old one, and
    lines still in use move back on their next hit.
    """

    def __init__(self, limit: int = 8_000_000) -> None:
        self.limit = limit
        self.size = 0  # bytes held by the young generation
        self.young: dict[str, bytes] = {}
        self.old: dict[str, bytes] = {}

    def encode(self, text: str) -> bytes:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # the text's final line end
        young = self.young
        out = []
        for line in lines:
            qp = young.get(line)
            if qp is None:
                qp = self.old.get(line) or _qp_line(line)
                self.size += len(line) + len(qp)
                if self.size > self.limit:
                    self.old, self.young, self.size = young, {}, len(line) + len(qp)
                    young = self.young
                young[line] = qp
            out.append(qp)
        return b"".join(out)


class Dkim:
    """DKIM signatures (RFC 6376): rsa-sha256, relaxed/relaxed, over ``DKIM_HEADERS``.

    Canonicalization and the header are done here, once per message and cheaply; the RSA
    signature uses OpenSSL through ``cryptography`` when it is installed (about 1 ms) and
    dkimpy's pure-Python RSA otherwise (about 6 ms). dkimpy verifies them in the tests.
    """

    def __init__(self, cfg: Config) -> None:
        c = cfg.dkim
        path = cfg.resolve(c.private_key_file)
        where = f"{cfg.path}: [dkim] private_key_file {path}"
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read ({exc.strerror}); fix the path or remove [dkim]"
            ) from exc
        self.selector = clean(c.selector)
        self.domain = clean(c.domain).lower()
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.selector + self.domain):
            raise ConfigError(f"{cfg.path}: [dkim] selector and domain must be DNS labels")
        try:
            self._sign = _rsa_signer(pem)
            self._sign(b"probe")  # fail now on a broken key, not on the first message
        except Exception as exc:
            raise ConfigError(
                f"{where}: not a usable RSA private key ({type(exc).__name__}); give a PEM "
                "file (openssl genrsa -out dkim.pem 2048)"
            ) from exc

    def sign(self, head: list[str], body: bytes, now: datetime) -> str:
        """The folded ``DKIM-Signature`` header line(s) for these header lines and body."""
        signed: list[str] = []
        names: list[str] = []
        wanted = {h.decode().lower() for h in DKIM_HEADERS}
        for field_ in head:
            name = field_.split(":", 1)[0]
            if name.lower() in wanted and name.lower() not in names:
                names.append(name.lower())
                signed.append(_relaxed_header(field_))
        bh = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode()
        tags = [
            "v=1",
            "a=rsa-sha256",
            "c=relaxed/relaxed",
            f"d={self.domain}",
            f"s={self.selector}",
            f"t={int(now.timestamp())}",
            "h=" + ":".join(names),
            f"bh={bh}",
            "b=",
        ]
        header = _fold_tags("DKIM-Signature:", tags)
        data = "".join(signed) + _relaxed_header(header).removesuffix(CRLF)
        sig = base64.b64encode(self._sign(data.encode("ascii"))).decode()
        room = MAX_LINE - len(header.rsplit(CRLF, 1)[-1])
        chunks = [sig[:room]] + [sig[i : i + 72] for i in range(room, len(sig), 72)]
        return header + f"{CRLF} ".join(c for c in chunks if c)


def _rsa_signer(pem: bytes) -> Callable[[bytes], bytes]:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:  # cryptography is optional
        from dkim.crypto import RSASSA_PKCS1_v1_5_sign, parse_pem_private_key

        parsed = parse_pem_private_key(pem)
        return lambda data: bytes(RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), parsed))
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("not an RSA key")
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


_WSP = re.compile(r"[ \t]+")
_BODY_WSP = re.compile(rb"[ \t]+")
_BODY_TRAILING = re.compile(rb"[ \t]+\r\n")


def _relaxed_header(field_: str) -> str:
    name, _, value = field_.partition(":")
    value = _WSP.sub(" ", value.replace(CRLF, "")).strip()
    return f"{name.strip().lower()}:{value}{CRLF}"


def _relaxed_body(body: bytes) -> bytes:
    body = _BODY_TRAILING.sub(b"\r\n", body)
    if b"  " in body or b"\t" in body:
        body = _BODY_WSP.sub(b" ", body)
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _fold_tags(start: str, tags: list[str]) -> str:
    lines, line = [], start
    for i, tag in enumerate(tags):
        piece = tag + (";" if i < len(tags) - 1 else "")
        if len(line) + 1 + len(piece) > MAX_LINE:
            lines.append(line)
            line = ""
        line += " " + piece
    lines.append(line)
    return CRLF.join(lines)


def dkim_configured(cfg: Config) -> bool:
    c = cfg.dkim
    fields = (c.selector, c.domain, c.private_key_file)
    if any(fields) and not all(fields):
        raise ConfigError(
            f"{cfg.path}: [dkim] needs selector, domain and private_key_file together; "
            "set all three or none"
        )
    return all(fields)


def _config_address(cfg: Config, key: str, address: str) -> str:
    try:
        return ascii_address(address)
    except SendError as exc:
        raise ConfigError(f"{cfg.path}: {key}: {exc}") from exc


class Composer:
    """Everything about a message that depends only on the config, prepared once."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        sender = _config_address(cfg, "[sender] address", cfg.sender.address)
        self.domain = domain_of(sender)
        self.sender = sender
        self.from_header = _address_header("From", cfg.sender.name, sender)
        reply_to = clean(cfg.sender.reply_to)
        if reply_to:
            reply_to = _config_address(cfg, "[sender] reply_to", reply_to)
        self.reply_to = f"Reply-To: {reply_to}" if reply_to else ""
        org = clean(cfg.sender.organization)
        self.organization = _fold_header("Organization", org) if org else ""
        self.list_id = f"List-Id: {self._list_id()}"
        self.url_base = _unsubscribe_base(cfg)
        self.secret = unsubscribe_secret(cfg) if self.url_base else b""
        mailto = clean(cfg.unsubscribe.mailto) or sender
        mailto = _config_address(cfg, "[unsubscribe] mailto", mailto.removeprefix("mailto:"))
        self.mailto = f"mailto:{mailto}?subject=unsubscribe"
        self.dkim = Dkim(cfg) if dkim_configured(cfg) else None
        self.qp = QpEncoder()
        if cfg.smtp.host and not self.url_base:
            log.warning(
                "[unsubscribe] url is not set: messages carry only a mailto: unsubscribe "
                "link; Gmail and Yahoo require one-click unsubscribe (RFC 8058) from bulk senders"
            )
        d = self.dkim.domain if self.dkim else ""
        if d and not (self.domain == d or self.domain.endswith("." + d)):
            log.warning(
                "[dkim] domain %s is not the From domain %s (or a parent of it): the "
                "signature will not align for DMARC",
                d,
                self.domain,
            )

    def _list_id(self) -> str:
        raw = clean(self.cfg.unsubscribe.list_id)
        label = raw or f"digest.{self.domain}"
        if "<" in label:
            return label
        if not re.fullmatch(r"[A-Za-z0-9.\-_]+", label):
            raise ConfigError(
                f"{self.cfg.path}: [unsubscribe] list_id {label!r}: use a dotted label like "
                "'papers.example.org'"
            )
        phrase = _phrase(self.cfg.sender.name)
        return f"{phrase} <{label}>" if phrase else f"<{label}>"

    def unsubscribe_url(self, email: str) -> str:
        return _signed_url(self.url_base, self.secret, email) if self.url_base else ""

    def headers(
        self, profile: Profile, edition: date, subject: str, now: datetime, mid: str
    ) -> list[str]:
        to = ascii_address(profile.email)
        when = now if now.tzinfo else now.replace(tzinfo=UTC)
        url = self.unsubscribe_url(to)
        targets = [f"<{self.mailto}>"] + ([f"<{url}>"] if url else [])
        lines = [
            self.from_header,
            _address_header("To", profile.name, to),
            _fold_header("Subject", subject),
            f"Date: {format_datetime(when)}",
            f"Message-ID: {mid}",
            self.list_id,
            "List-Unsubscribe: " + f",{CRLF} ".join(targets),
        ]
        if url:
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        if self.reply_to:
            lines.append(self.reply_to)
        if self.organization:
            lines.append(self.organization)
        lines.append("Auto-Submitted: auto-generated")
        lines.append("MIME-Version: 1.0")
        return lines

    def build(self, profile: Profile, edition: date, rendered: Rendered, *, now: datetime) -> bytes:
        mid = message_id(profile.email, edition, self.domain)
        head = self.headers(profile, edition, rendered.subject, now, mid)
        boundary = "=_digest_" + hashlib.sha256(mid.encode()).hexdigest()[:24]
        head.append(f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"')
        part = (
            "Content-Type: text/{sub}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        body = b"".join(
            (
                b"This is a multipart message in MIME format.\r\n\r\n",
                f"--{boundary}\r\n".encode(),
                part.format(sub="plain").encode(),
                self.qp.encode(rendered.text),
                f"\r\n--{boundary}\r\n".encode(),
                part.format(sub="html").encode(),
                self.qp.encode(rendered.html),
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        if self.dkim is not None:
            head.insert(0, self.dkim.sign(head, body, now))
        return CRLF.join(head).encode("ascii") + b"\r\n\r\n" + body


def build_message(
    cfg: Config, profile: Profile, edition: date, rendered: Rendered, *, now: datetime
) -> bytes:
    """One complete message (CRLF line ends, every line within 78 columns)."""
    return Composer(cfg).build(profile, edition, rendered, now=now)


def eml_name(profile: Profile) -> str:
    """A safe file name for a subscriber's .eml in the outbox: the subscriber file's name,
    or the whole address for a profile that did not come from a file."""
    name = profile.path.stem if profile.path is not None else profile.email
    stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._") or "subscriber"
    return f"{stem}.eml"


def outbox_path(cfg: Config, profile: Profile, edition: date) -> Path:
    return cfg.outbox_path / edition.isoformat() / eml_name(profile)
