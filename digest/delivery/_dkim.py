"""DKIM signatures (RFC 6376): rsa-sha256, relaxed/relaxed, over the headers receivers check.

Canonicalization and the header are done here, once per message and cheaply; the RSA
signature uses OpenSSL through ``cryptography`` when it is installed (about 1 ms) and
dkimpy's pure-Python RSA otherwise (about 6 ms). dkimpy verifies them in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import datetime

from ..config import Config
from ..errors import ConfigError
from ._headers import CRLF, MAX_LINE, clean

DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


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
