"""One SMTP connection: TLS as configured (never downgraded), AUTH, and a lean send.

``smtplib`` does the connection set-up (greeting, EHLO, STARTTLS, AUTH); sending uses
the same socket but pipelines MAIL, RCPT and DATA in one write when the server offers
PIPELINING (RFC 2920), which halves the round trips per message.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from typing import Literal

from .config import Config
from .errors import AuthError, SendError

log = logging.getLogger(__name__)

Status = Literal["sent", "temporary", "permanent", "dropped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server said about one message."""

    status: Status
    reply: str = ""


class TemporaryServerError(SendError):
    """The server cannot take mail right now (refused connection, 421 greeting, timeout)."""


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


def _kind(code: int) -> Status:
    if 200 <= code < 300:
        return "sent"
    if code == 421:
        return "dropped"
    return "temporary" if 400 <= code < 500 else "permanent"


def tls_context(cfg: Config) -> ssl.SSLContext:
    ca = str(cfg.resolve(cfg.smtp.ca_file)) if cfg.smtp.ca_file else None
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise SendError(
            f"{cfg.path}: [smtp] ca_file {ca}: cannot load ({exc}); give a PEM bundle"
        ) from exc


_DOT = re.compile(rb"(?m)^\.")


def dot_stuff(data: bytes) -> bytes:
    if data.startswith(b".") or b"\n." in data:
        return _DOT.sub(b"..", data)
    return data


class SmtpConnection:
    """A connection to ``[smtp] host`` that sends one message at a time."""

    def __init__(self, cfg: Config, password: str, context: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.password = password
        self.context = context if context is not None else tls_context(cfg)
        self.smtp: smtplib.SMTP | None = None
        self.sent = 0  # messages on this connection
        self.pipelining = False
        self.size_ext = False
        self.where = f"{cfg.smtp.host}:{cfg.smtp.port}"

    # -- set-up ---------------------------------------------------------------
    def open(self) -> None:
        """Connect, secure and authenticate; raises AuthError, SendError or TemporaryServerError."""
        c = self.cfg.smtp
        local = c.local_hostname or None
        try:
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    c.host, c.port, local_hostname=local, timeout=c.timeout, context=self.context
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, local_hostname=local, timeout=c.timeout)
            try:
                self._secure(smtp)
                self._login(smtp)
            except BaseException:
                smtp.close()
                raise
        except ssl.SSLCertVerificationError as exc:
            raise SendError(
                f"{self.where}: TLS certificate not trusted ({exc.verify_message}); set "
                "[smtp] ca_file for a private relay; the connection is never downgraded"
            ) from exc
        except ssl.SSLError as exc:
            raise SendError(
                f"{self.where}: TLS failed ({exc.reason or exc}); check [smtp] port and "
                "security (ssl is usually port 465, starttls port 587)"
            ) from exc
        except smtplib.SMTPConnectError as exc:
            raise TemporaryServerError(
                f"{self.where}: server refused the session "
                f"({_reply(exc.smtp_code, exc.smtp_error)})"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise TemporaryServerError(
                f"{self.where}: {_reply(exc.smtp_code, exc.smtp_error)} during connection set-up"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            why = str(exc) or type(exc).__name__
            raise TemporaryServerError(f"{self.where}: cannot connect ({why})") from exc
        self.smtp = smtp
        self.sent = 0
        self.pipelining = smtp.has_extn("pipelining")
        self.size_ext = smtp.has_extn("size")
        log.debug("connected to %s (pipelining=%s)", self.where, self.pipelining)

    def _secure(self, smtp: smtplib.SMTP) -> None:
        code, msg = smtp.ehlo()
        if not 200 <= code < 300:
            code, msg = smtp.helo()
            if not 200 <= code < 300:
                raise smtplib.SMTPResponseException(code, msg)
        if self.cfg.smtp.security != "starttls":
            return
        if not smtp.has_extn("starttls"):
            raise SendError(
                f"{self.where}: server does not offer STARTTLS, and [smtp] security = "
                '"starttls" never falls back to plain text; use security = "ssl" (port 465) '
                "or fix the server"
            )
        code, msg = smtp.starttls(context=self.context)
        if code != 220:
            raise SendError(
                f"{self.where}: STARTTLS refused ({_reply(code, msg)}); not sending in clear"
            )
        smtp.ehlo()

    def _login(self, smtp: smtplib.SMTP) -> None:
        c = self.cfg.smtp
        if not c.user:
            return
        hint = f"check [smtp] user and {c.password_env}"
        if not smtp.has_extn("auth"):
            raise AuthError(f"{self.where}: server does not offer AUTH; {hint} and [smtp] security")
        try:
            smtp.login(c.user, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(
                f"{self.where}: authentication failed "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); {hint}"
            ) from exc
        except smtplib.SMTPException as exc:
            raise AuthError(f"{self.where}: authentication failed ({exc}); {hint}") from exc

    # -- sending --------------------------------------------------------------
    def send(self, sender: str, recipient: str, data: bytes) -> Outcome:
        """Send one message to one recipient. ``dropped`` means the fate is unknown."""
        if self.smtp is None:
            self.open()
        smtp = self.smtp
        assert smtp is not None
        body = dot_stuff(data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        size = f" SIZE={len(body)}" if self.size_ext else ""
        try:
            mail, rcpt = f"MAIL FROM:<{sender}>{size}", f"RCPT TO:<{recipient}>"
            if self.pipelining:
                outcome = self._pipelined(smtp, mail, rcpt)
            else:
                outcome = self._stepwise(smtp, mail, rcpt)
            if outcome is not None:
                return outcome
            smtp.send(body + b".\r\n")
            code, msg = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self.close(quit=False)
            return Outcome("dropped", f"connection lost: {exc or type(exc).__name__}")
        if code == 421:
            self.close(quit=False)
        self.sent += 1
        return Outcome(_kind(code), _reply(code, msg))

    def _pipelined(self, smtp: smtplib.SMTP, mail: str, rcpt: str) -> Outcome | None:
        smtp.send(f"{mail}\r\n{rcpt}\r\nDATA\r\n")
        replies = [smtp.getreply() for _ in range(3)]
        (c1, m1), (c2, m2), (c3, m3) = replies
        if c3 == 354 and (c1 != 250 or c2 not in (250, 251)):
            # A server that opened DATA after refusing the envelope: drop it rather than
            # risk sending an empty message.
            self.close(quit=False)
            bad = (c1, m1) if c1 != 250 else (c2, m2)
            return Outcome(_kind(bad[0]) if bad[0] >= 400 else "dropped", _reply(*bad))
        return self._check(smtp, (c1, m1), (c2, m2), (c3, m3))

    def _stepwise(self, smtp: smtplib.SMTP, mail: str, rcpt: str) -> Outcome | None:
        c1, m1 = smtp.docmd(mail)
        if c1 != 250:
            return self._check(smtp, (c1, m1))
        c2, m2 = smtp.docmd(rcpt)
        if c2 not in (250, 251):
            return self._check(smtp, (c1, m1), (c2, m2))
        return self._check(smtp, (c1, m1), (c2, m2), smtp.docmd("DATA"))

    def _check(self, smtp: smtplib.SMTP, *replies: tuple[int, bytes]) -> Outcome | None:
        """None when the envelope was accepted and DATA is open; else the outcome."""
        expected = (250, 250, 354)
        for (code, msg), ok in zip(replies, expected, strict=False):
            if code == ok or (ok == 250 and code == 251):
                continue
            if code == 421 or code < 0:
                self.close(quit=False)
                return Outcome("dropped", _reply(code, msg))
            try:
                smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.close(quit=False)
            return Outcome(_kind(code), _reply(code, msg))
        if len(replies) < 3:
            raise AssertionError("envelope check needs MAIL, RCPT and DATA replies")
        return None

    def close(self, *, quit: bool = True) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            if quit:
                smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            with contextlib.suppress(OSError):
                smtp.close()


def probe(cfg: Config, password: str) -> None:
    """Open and close one connection (for ``digest check --smtp``-style checks)."""
    conn = SmtpConnection(cfg, password)
    conn.open()
    conn.close()
