"""Building the raw message bytes: headers, multipart/alternative body, DKIM signature.

Messages are assembled by hand rather than with ``email.message.EmailMessage``: the
per-sender parts (From, List-Id, List-Unsubscribe base, DKIM key) are prepared once per
run by a ``Composer``, and each message costs a few string joins plus quoted-printable
encoding of the lines not seen before in this run (``QpEncoder``). A text from the
renderer's fast path arrives as the parts it was joined from; its body is the same bytes
the whole text would give, most of it the parts' lines encoded once per run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from ..config import Config
from ..errors import ConfigError, SendError
from ..models import Profile, Rendered
from ..qp import QpEncoder
from ._dkim import Dkim, dkim_configured
from ._headers import (
    CRLF,
    address_header,
    ascii_address,
    clean,
    domain_of,
    fold_header,
    message_id,
    phrase,
    signed_url,
    unsubscribe_base,
)

log = logging.getLogger(__name__)


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
        self.from_header = address_header("From", cfg.sender.name, sender)
        reply_to = clean(cfg.sender.reply_to)
        if reply_to:
            reply_to = _config_address(cfg, "[sender] reply_to", reply_to)
        self.reply_to = f"Reply-To: {reply_to}" if reply_to else ""
        org = clean(cfg.sender.organization)
        self.organization = fold_header("Organization", org) if org else ""
        self.list_id = f"List-Id: {self._list_id()}"
        self.url_base = unsubscribe_base(cfg)
        self.tokens = cfg.link_tokens() if self.url_base else None
        mailto = clean(cfg.unsubscribe.mailto) or sender
        mailto = _config_address(cfg, "[unsubscribe] mailto", mailto.removeprefix("mailto:"))
        self.mailto = f"mailto:{mailto}?subject=unsubscribe"
        self.dkim = Dkim(cfg) if dkim_configured(cfg) else None
        self.qp = QpEncoder()
        self._subjects: dict[str, str] = {}
        self._last_date: tuple[tuple[float, Any] | None, str] = (None, "")  # by the second

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
        name = phrase(self.cfg.sender.name)
        return f"{name} <{label}>" if name else f"<{label}>"

    def unsubscribe_url(self, email: str) -> str:
        return signed_url(self.url_base, self.tokens, email) if self.tokens else ""

    def headers(
        self,
        profile: Profile,
        edition: date,
        subject: str,
        now: datetime,
        mid: str,
        *,
        bulk: bool = True,
    ) -> list[str]:
        """The header lines; ``bulk=False`` (a confirmation mail to someone not yet on the
        list) leaves out List-Id and List-Unsubscribe."""
        to = ascii_address(profile.email)
        when = now if now.tzinfo else now.replace(tzinfo=UTC)
        lines = [
            self.from_header,
            address_header("To", profile.name, to),
            self._subject(subject),
            self._date(when),
            f"Message-ID: {mid}",
        ]
        url = self.unsubscribe_url(to) if bulk else ""
        if bulk:
            targets = [f"<{self.mailto}>"] + ([f"<{url}>"] if url else [])
            lines.append(self.list_id)
            lines.append("List-Unsubscribe: " + f",{CRLF} ".join(targets))
        if url:
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        if self.reply_to:
            lines.append(self.reply_to)
        if self.organization:
            lines.append(self.organization)
        lines.append("Auto-Submitted: auto-generated")
        lines.append("MIME-Version: 1.0")
        return lines

    def _subject(self, subject: str) -> str:
        """The folded Subject header; subscribers of one edition mostly share theirs (the
        top paper's title and the count: thousands of subjects in a run)."""
        folded = self._subjects.get(subject)
        if folded is None:
            if len(self._subjects) >= 16_384:
                self._subjects.clear()
            folded = self._subjects[subject] = fold_header("Subject", subject)
        return folded

    def _date(self, when: datetime) -> str:
        """The Date header, made once a second."""
        key = (when.timestamp() // 1, when.tzinfo)
        if self._last_date[0] != key:
            second = when.replace(microsecond=0)
            self._last_date = (key, f"Date: {format_datetime(second)}")
        return self._last_date[1]

    def _encode(self, text: str, parts: tuple[str, ...]) -> bytes:
        """The text's quoted-printable body: the same bytes whether the renderer handed the
        text in parts (its fast path) or whole (the per-email path)."""
        if parts:
            return self.qp.encode_parts(parts)
        return self.qp.encode(text)

    def build(
        self,
        profile: Profile,
        edition: date,
        rendered: Rendered,
        *,
        now: datetime,
        mid: str | None = None,
        bulk: bool = True,
    ) -> bytes:
        """The message's bytes; ``mid`` is its Message-ID when the caller has it already."""
        mid = mid or message_id(profile.email, edition, self.domain)
        head = self.headers(profile, edition, rendered.subject, now, mid, bulk=bulk)
        boundary = "=_digest_" + hashlib.sha256(mid.encode()).hexdigest()[:24]
        head.append(f'Content-Type: multipart/alternative;{CRLF} boundary="{boundary}"')
        sep = boundary.encode()
        pieces = [
            b"This is a multipart message in MIME format.\r\n\r\n--",
            sep,
            _PLAIN_HEAD,
            self._encode(rendered.text, rendered.text_parts),
            b"\r\n--",
            sep,
            _HTML_HEAD,
            self._encode(rendered.html, rendered.html_parts),
            b"\r\n--",
            sep,
            b"--\r\n",
        ]
        if self.dkim is not None:
            body = b"".join(pieces)
            head.insert(0, self.dkim.sign(head, body, now))
            pieces = [body]
        return b"".join([CRLF.join(head).encode("ascii"), b"\r\n\r\n", *pieces])


_PART_HEAD = (
    "\r\nContent-Type: text/{sub}; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_PLAIN_HEAD = _PART_HEAD.format(sub="plain").encode()
_HTML_HEAD = _PART_HEAD.format(sub="html").encode()


def build_message(
    cfg: Config, profile: Profile, edition: date, rendered: Rendered, *, now: datetime
) -> bytes:
    """One complete message (CRLF line ends, every line within 78 columns)."""
    return Composer(cfg).build(profile, edition, rendered, now=now)
