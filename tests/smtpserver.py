"""A real SMTP server on loopback (aiosmtpd) with fault modes, for tests.

    with SmtpServer(reject={"bad@example.org"}) as srv:
        ... send to 127.0.0.1:srv.port ...
        srv.messages  # [(envelope_from, rcpt_tos, raw bytes), ...]

Fault modes (all optional, combinable):
  refuse_connections=N   the next N connections get "421" as greeting and are closed
  temp_fail={addr: n}    RCPT TO addr is answered "451" n times, then accepted
  reject={addr}          RCPT TO addr is answered "550 5.1.1 no such user" every time
  drop_after=N           each connection is closed (no QUIT) after accepting N messages
  lose_reply={k}         the k-th accepted message overall (1-based) is stored, then the
                         connection is closed before the "250" reply: fate unknown to the client
  lose_every_reply=True  every message is stored, then the connection closed before its "250"
  delay=s                every DATA reply comes s seconds after the message is stored
                         (a slow server; RCPT replies wait s/4)
  auth=(user, password)  AUTH required (PLAIN/LOGIN); wrong credentials get "535"
  tls="starttls"|"ssl"   TLS with a fresh self-signed certificate; its PEM is at srv.ca_file
  pipelining=True        advertise PIPELINING (RFC 2920)
  starttls_advertised    False: a plain server that does not offer STARTTLS at all
  reject_sender=True     MAIL FROM is answered "550 5.7.1 sender not allowed"
  host="10.1.2.3"        listen on another address of this machine (default 127.0.0.1)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """aiosmtpd 1.4 cannot start on port 0: find a free port first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler:
    def __init__(self, srv: SmtpServer) -> None:
        self.srv = srv

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        out = list(responses)
        if not self.srv.starttls_advertised:
            out = [r for r in out if "STARTTLS" not in r.upper()]
        if self.srv.pipelining:
            out.insert(-1, "250-PIPELINING")
        return out

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.srv.reject_sender:
            return f"550 5.7.1 <{address}>: sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        srv = self.srv
        key = address.lower()
        if srv.delay:
            await asyncio.sleep(srv.delay / 4)
        with srv.lock:
            if key in srv.reject:
                srv.refusals.append((address, 550))
                return f"550 5.1.1 <{address}>: no such user here"
            left = srv.temp_fail.get(key, 0)
            if left > 0:
                srv.temp_fail[key] = left - 1
                srv.refusals.append((address, 451))
                return f"451 4.7.1 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        srv = self.srv
        raw = bytes(envelope.original_content or b"")
        with srv.lock:
            srv.messages.append((envelope.mail_from, list(envelope.rcpt_tos), raw))
            number = len(srv.messages)
            count = srv._per_conn.get(id(server), 0) + 1
            srv._per_conn[id(server)] = count
        if srv.delay:  # stored already: a client that gives up now leaves a copy behind
            await asyncio.sleep(srv.delay)
        lose = number in srv.lose_reply or srv.lose_every_reply
        if lose or (srv.drop_after and count >= srv.drop_after):
            if lose:
                server.transport.close()  # stored, but the client never hears "250"
                return "250 OK (never seen)"
            asyncio.get_running_loop().call_soon(server.transport.close)
        return f"250 2.0.0 OK queued as {number}"


class _Smtp(SMTP):
    """aiosmtpd's SMTP session with a refusable greeting."""

    srv: SmtpServer

    async def _handle_client(self) -> None:
        srv = self.srv
        with srv.lock:
            srv.connections += 1
            refuse = srv.refuse_connections > 0
            if refuse:
                srv.refuse_connections -= 1
        if refuse:
            await self.push("421 4.3.2 service not available, closing channel")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, srv: SmtpServer, **kwargs: Any) -> None:
        self.srv = srv
        super().__init__(_Handler(srv), **kwargs)

    def factory(self) -> SMTP:
        smtp = _Smtp(self.handler, **self.SMTP_kwargs)
        smtp.srv = self.srv
        if self.srv.tls == "ssl":
            # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted all the same
            smtp._auth_require_tls = False
        return smtp


class SmtpServer:
    def __init__(
        self,
        *,
        refuse_connections: int = 0,
        temp_fail: dict[str, int] | None = None,
        reject: Iterable[str] = (),
        drop_after: int = 0,
        lose_reply: Iterable[int] = (),
        lose_every_reply: bool = False,
        delay: float = 0.0,
        auth: tuple[str, str] | None = None,
        tls: str | None = None,
        pipelining: bool = False,
        starttls_advertised: bool = True,
        reject_sender: bool = False,
        port: int | None = None,
        host: str = HOST,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.temp_fail = {k.lower(): v for k, v in (temp_fail or {}).items()}
        self.reject = {r.lower() for r in reject}
        self.drop_after = drop_after
        self.lose_reply = set(lose_reply)
        self.lose_every_reply = lose_every_reply
        self.delay = delay
        self.auth = auth
        self.tls = tls
        self.pipelining = pipelining
        self.starttls_advertised = starttls_advertised
        self.reject_sender = reject_sender
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refusals: list[tuple[str, int]] = []  # (recipient, code) for refused RCPTs
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self.connections = 0
        self.lock = threading.Lock()
        self._per_conn: dict[int, int] = {}
        self._refuse = refuse_connections
        self.refuse_connections = 0  # applied after start-up (the self-check connects once)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file = ""
        self._controller: _Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        user = ""
        if isinstance(auth_data, LoginPassword) and self.auth is not None:
            user = auth_data.login.decode()
            ok = (user, auth_data.password.decode()) == self.auth
        self.logins.append((user, ok))
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        ctx = None
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="smtpserver-")
            cert, key = make_certificate(Path(self._tmp.name))
            self.ca_file = str(cert)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        if self.tls == "ssl":
            kwargs["ssl_context"] = ctx
        elif self.tls == "starttls":
            kwargs["tls_context"] = ctx
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = bool(self.tls)
        self._controller = _Controller(self, **kwargs)
        self._controller.start()
        with self.lock:
            self.refuse_connections = self._refuse
            self.connections = 0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # helpers for assertions -------------------------------------------------------
    def recipients(self) -> list[str]:
        return [r for _, rcpts, _ in self.messages for r in rcpts]

    def for_recipient(self, address: str) -> list[bytes]:
        return [
            raw for _, rcpts, raw in self.messages if address.lower() in (r.lower() for r in rcpts)
        ]
