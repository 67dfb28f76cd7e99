"""One SMTP connection: TLS as configured (never downgraded), AUTH, and a lean send.

``smtplib`` does the connection set-up (greeting, EHLO, STARTTLS, AUTH); sending uses
the same socket but pipelines MAIL, RCPT and DATA in one write when the server offers
PIPELINING (RFC 2920), which halves the round trips per message.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import Literal

from ..config import Config, is_loopback
from ..errors import AuthError, SendError

log = logging.getLogger(__name__)

Status = Literal["sent", "temporary", "permanent", "dropped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server said about one message. ``unknown``: the message went out whole
    and no answer came back (the server may have taken it)."""

    status: Status
    reply: str = ""
    unknown: bool = False


class TemporaryServerError(SendError):
    """The server cannot take mail right now (refused connection, 421 greeting, timeout)."""


class _Smtp(smtplib.SMTP):
    """smtplib's client, telling a connection that was made but never greeted (a peer that
    is not an SMTP server, say a web server on the port) from one that could not be made."""

    connected = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.connected = True
        return sock


class _SmtpSsl(smtplib.SMTP_SSL):
    connected = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.connected = True
        return sock


_PORTS = "587 for starttls, 465 for ssl, 25 for a local relay"


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
_NL_DOT = re.compile(rb"\n\.")  # three times quicker than ``b"\n." in data`` on a message


def dot_stuff(data: bytes) -> bytes:
    if data.startswith(b".") or _NL_DOT.search(data):
        return _DOT.sub(b"..", data)
    return data


def _body(data: bytes) -> bytes:
    """The message as it goes after DATA: dot-stuffed, ending in a line end."""
    body = dot_stuff(data)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _send_all(sock: socket.socket, parts: tuple[bytes, ...]) -> None:
    """``sendall`` of the parts joined, without copying them into one buffer first (a TLS
    socket has no ``sendmsg``: there they are joined)."""
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(parts))
        return
    sent = sock.sendmsg(parts)
    if sent < sum(map(len, parts)):
        sock.sendall(b"".join(parts)[sent:])


class SmtpConnection:
    """A connection to ``[smtp] host`` that sends one message at a time."""

    def __init__(self, cfg: Config, password: str, context: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.password = password
        self.context = context if context is not None else tls_context(cfg)
        self.smtp: smtplib.SMTP | None = None
        self.reader: Replies | None = None
        self.sock: socket.socket | None = None
        self.sent = 0  # messages on this connection
        self.opened: tuple[str, str] | None = None  # envelope sent ahead, replies unread
        self._ahead: tuple[bytes, bytes] | None = None  # (data, body) of the envelope ahead
        self.pipelining = False
        self.size_ext = False
        self.where = f"{cfg.smtp.host}:{cfg.smtp.port}"

    # -- set-up ---------------------------------------------------------------
    def open(self) -> None:
        """Connect, secure and authenticate; raises AuthError, SendError or TemporaryServerError."""
        c = self.cfg.smtp
        local = c.local_hostname or None
        smtp: _Smtp | _SmtpSsl
        if c.security == "ssl":
            smtp = _SmtpSsl(local_hostname=local, timeout=c.timeout, context=self.context)
        else:
            smtp = _Smtp(local_hostname=local, timeout=c.timeout)
        smtp._host = c.host  # type: ignore[union-attr]  # TLS checks the certificate for it
        try:
            try:
                try:
                    code, msg = smtp.connect(c.host, c.port)
                except (OSError, smtplib.SMTPServerDisconnected) as exc:
                    # smtplib words a timeout while reading the greeting as a disconnection
                    if smtp.connected and isinstance(exc.__context__ or exc, TimeoutError):
                        raise SendError(
                            f"{self.where}: connected, but no SMTP greeting within "
                            f"{c.timeout:g} s: not an SMTP server, or not on this port; check "
                            f"[smtp] host and port ({_PORTS})"
                        ) from exc
                    raise
                self._greeting(code, msg)
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
        assert smtp.sock is not None
        self.smtp = smtp
        self.sock = smtp.sock
        self.reader = Replies(smtp.sock)
        self.sent = 0
        self.pipelining = smtp.has_extn("pipelining")
        self.size_ext = smtp.has_extn("size")
        log.debug("connected to %s (pipelining=%s)", self.where, self.pipelining)

    def _greeting(self, code: int, msg: bytes) -> None:
        """The server's first words: 220 goes on, 4xx/5xx refuse the session (for now),
        and anything else is not SMTP at all: stop rather than retry."""
        if code == 220:
            return
        if 400 <= code < 600:
            raise smtplib.SMTPConnectError(code, msg)
        # smtplib keeps a reply line from its fifth character: the first four are gone
        said = msg.decode("utf-8", "replace").splitlines()[0][:60] if msg else ""
        raise SendError(
            f"{self.where}: the server there does not speak SMTP (it said '…{said}'); check "
            f"[smtp] host and port ({_PORTS})"
        )

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
                '"starttls" never falls back to plain text; use security = "ssl" (port 465), '
                'or security = "none" for a relay on this machine or your own network (mail '
                "to it is then unencrypted), or turn on STARTTLS in the server"
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
        if c.security == "none" and not is_loopback(c.host):
            log.warning(
                "%s: sending the password in clear text ([smtp] insecure_cleartext_auth = true)",
                self.where,
            )
        try:
            if (c.user + self.password).isascii():
                smtp.login(c.user, self.password)
            else:  # smtplib encodes credentials as ASCII: PLAIN in UTF-8 (RFC 4616) instead
                self._login_utf8(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(
                f"{self.where}: authentication failed "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); {hint}"
            ) from exc
        except smtplib.SMTPException as exc:
            raise AuthError(f"{self.where}: authentication failed ({exc}); {hint}") from exc

    def _login_utf8(self, smtp: smtplib.SMTP) -> None:
        """AUTH PLAIN with the user and password in UTF-8 (a password read from the
        environment that is not UTF-8 goes as the bytes it was)."""
        c = self.cfg.smtp
        offered = (smtp.esmtp_features.get("auth") or "").upper().split()
        if "PLAIN" not in offered:
            raise AuthError(
                f"{self.where}: [smtp] user or the password in {c.password_env} is not plain "
                "ASCII, which needs AUTH PLAIN, and the server offers only "
                f"{', '.join(offered) or 'no method'}; use an ASCII password"
            )
        secret = self.password.encode("utf-8", "surrogateescape")
        token = base64.b64encode(b"\0" + c.user.encode("utf-8") + b"\0" + secret)
        code, reply = smtp.docmd("AUTH", "PLAIN " + token.decode("ascii"))
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, reply)

    # -- sending --------------------------------------------------------------
    def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        *,
        then: tuple[str, str, bytes] | None = None,
    ) -> Outcome:
        """Send one message to one recipient. ``dropped``: the connection went away; with
        ``unknown`` set, after the whole message went out (its fate is unknown).

        ``then`` is the next message for this connection (sender, recipient, data): when
        the server pipelines, its envelope (MAIL, RCPT, DATA) goes out right after this
        message's data (RFC 2920 allows the data to start a group), so a message costs
        one round trip instead of two. The next ``send`` must then be that message, or
        ``abandon`` the connection. This message's reply is read before that send, so
        its outcome is still recorded before the next message's data goes out.
        """
        if self.smtp is None:
            self.open()
        assert self.sock is not None and self.reader is not None
        sock, read = self.sock, self.reader.reply
        ahead_of = self._ahead
        self._ahead = None
        # The body of a message whose envelope went ahead was dot-stuffed then (a scan
        # of the whole message: once is enough).
        body = ahead_of[1] if ahead_of is not None and ahead_of[0] is data else _body(data)
        sent = False  # the whole message, up to the final dot, is out
        try:
            if self.opened is not None:
                if self.opened != (sender, recipient):
                    raise AssertionError("send() after an envelope sent ahead for another message")
                self.opened = None
                outcome = self._check(read(), read(), read())
            elif self.pipelining:
                sock.sendall(self._envelope(sender, recipient, body))
                outcome = self._check(read(), read(), read())
            else:
                outcome = self._stepwise(*self._commands(sender, recipient, body))
            if outcome is not None:
                return outcome
            ahead = then_body = b""
            if then is not None and self.pipelining:
                then_body = _body(then[2])
                ahead = self._envelope(then[0], then[1], then_body)
            _send_all(sock, (body, b".\r\n", ahead))
            sent = True
            code, msg = read()
        except (OSError, smtplib.SMTPException) as exc:
            self.close(quit=False)
            why = str(exc) or type(exc).__name__
            if sent:
                return Outcome(
                    "dropped", f"connection lost before the server confirmed ({why})", True
                )
            return Outcome("dropped", f"connection lost: {why}")
        if ahead and then is not None:
            self.opened = (then[0], then[1])
            self._ahead = (then[2], then_body)
        if code == 421:
            self.close(quit=False)
        self.sent += 1
        return Outcome(_kind(code), _reply(code, msg))

    def abandon(self) -> None:
        """Drop an envelope sent ahead (the server waits for its data): close the
        connection without a QUIT, so the server discards the empty message."""
        if self.opened is not None:
            self.close(quit=False)

    def _commands(self, sender: str, recipient: str, body: bytes) -> tuple[bytes, bytes]:
        size = f" SIZE={len(body)}" if self.size_ext else ""
        return (
            f"MAIL FROM:<{sender}>{size}\r\n".encode(),
            f"RCPT TO:<{recipient}>\r\n".encode(),
        )

    def _envelope(self, sender: str, recipient: str, body: bytes) -> bytes:
        mail, rcpt = self._commands(sender, recipient, body)
        return mail + rcpt + b"DATA\r\n"

    def _stepwise(self, mail: bytes, rcpt: bytes) -> Outcome | None:
        assert self.sock is not None and self.reader is not None
        sock, read = self.sock, self.reader.reply
        sock.sendall(mail)
        first = read()
        if first[0] != 250:
            return self._check(first)
        sock.sendall(rcpt)
        second = read()
        if second[0] not in (250, 251):
            return self._check(first, second)
        sock.sendall(b"DATA\r\n")
        return self._check(first, second, read())

    def _check(self, *replies: tuple[int, bytes]) -> Outcome | None:
        """None when the envelope was accepted and DATA is open; else the outcome, after
        RSET (or closing the connection when the server is going away)."""
        expected = ((250, 251), (250, 251), (354,))
        failed = [i for i, (code, _) in enumerate(replies) if code not in expected[i]]
        if not failed:
            if len(replies) < 3:
                raise AssertionError("envelope check needs MAIL, RCPT and DATA replies")
            return None
        bad = replies[failed[0]]
        if bad[0] == 530 or (failed[0] == 0 and bad[0] >= 500):
            self.close()
            self._refused_for_all(*bad)
        if replies[-1][0] == 354 or bad[0] == 421 or bad[0] < 0:
            # Going away, or DATA opened after a refused envelope (a broken server): close
            # rather than risk sending an empty message.
            self.close(quit=False)
            return Outcome(
                "dropped" if bad[0] < 400 or bad[0] == 421 else _kind(bad[0]), _reply(*bad)
            )
        assert self.sock is not None and self.reader is not None
        try:
            self.sock.sendall(b"RSET\r\n")
            self.reader.reply()
        except (OSError, smtplib.SMTPException):
            self.close(quit=False)
        return Outcome(_kind(bad[0]), _reply(*bad))

    def _refused_for_all(self, code: int, msg: bytes) -> None:
        """A refusal that would repeat for every message: stop the run with the reason."""
        reply = _reply(code, msg)
        if code == 530:
            raise AuthError(
                f"{self.where}: the server requires authentication ({reply}); set [smtp] user "
                f"and export the password in {self.cfg.smtp.password_env}"
            )
        raise SendError(
            f"{self.where}: the server refused our sender {self.cfg.sender.address} ({reply}); "
            "check [sender] address: the relay must allow it for [smtp] user"
        )

    def close(self, *, quit: bool = True) -> None:
        smtp, self.smtp = self.smtp, None
        self.sock = self.reader = None
        if self.opened is not None:  # the server waits for data: no QUIT now
            self.opened = None
            quit = False
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


class Replies:
    """SMTP replies read straight from the socket (leaner than smtplib's line reader).

    The send path alternates strictly between commands and their replies, so nothing is
    left buffered here when smtplib takes over again (RSET, QUIT)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def reply(self) -> tuple[int, bytes]:
        lines: list[bytes] = []
        while True:
            end = self.buf.find(b"\n")
            while end < 0:
                if len(self.buf) > 65536:
                    raise smtplib.SMTPServerDisconnected("reply line too long")
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise smtplib.SMTPServerDisconnected("connection closed by the server")
                self.buf += chunk
                end = self.buf.find(b"\n")
            line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
            lines.append(line[4:].strip())
            try:
                code = int(line[:3])
            except ValueError:
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return code, b"\n".join(lines)


def check_relay(cfg: Config, password: str) -> str:
    """Connect to ``[smtp] host`` as a run would (EHLO, STARTTLS or TLS, AUTH), offer the
    sender with MAIL FROM, then RSET and QUIT: nothing is sent. Returns what was found, in
    one line; raises AuthError, SendError or TemporaryServerError as a run would."""
    conn = SmtpConnection(cfg, password)
    conn.open()
    smtp = conn.smtp
    assert smtp is not None
    c = cfg.smtp
    sock = smtp.sock
    tls = sock.version() if isinstance(sock, ssl.SSLSocket) else None
    parts = [f"{c.security.upper()} ({tls})" if tls else 'no TLS (security = "none")']
    parts.append(f"logged in as {c.user}" if c.user else "no login ([smtp] user is empty)")
    try:
        code, msg = smtp.mail(cfg.sender.address)
        if 200 <= code < 300:
            smtp.rset()
    except (OSError, smtplib.SMTPException) as exc:
        conn.close(quit=False)
        raise TemporaryServerError(f"{conn.where}: connection lost ({exc})") from exc
    conn.close()
    if not 200 <= code < 300:
        conn._refused_for_all(code, msg)
    parts.append(f"sender {cfg.sender.address} accepted")
    return f"{conn.where}: OK: {', '.join(parts)}; nothing was sent"
