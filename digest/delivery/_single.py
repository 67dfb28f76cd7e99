"""One message outside a run: the confirmation mail of a web sign-up, or a reader's
preferences link. Same composer (headers, DKIM), same SMTP connection code or outbox as a
digest, but no delivery-log row: it belongs to no edition."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import datetime

from ..config import Config
from ..errors import SendError
from ..models import Profile, Rendered
from ._headers import ascii_address
from ._mime import Composer
from ._smtp import SmtpConnection

log = logging.getLogger(__name__)


def send_one(cfg: Config, profile: Profile, rendered: Rendered, *, now: datetime, kind: str) -> str:
    """Send (or, without ``[smtp] host``, write to ``<outbox>/<kind>/``) one message; the
    path or the server's reply. Raises SendError when the server does not take it."""
    composer = Composer(cfg)
    key = f"{kind}\0{profile.email}\0{now.isoformat()}".encode()
    mid = f"<{kind}.{hashlib.sha256(key).hexdigest()[:32]}@{composer.domain}>"
    data = composer.build(profile, now.date(), rendered, now=now, mid=mid, bulk=False)
    if not cfg.smtp.host:
        folder = cfg.outbox_path / re.sub(r"[^a-z0-9-]", "", kind)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", profile.email).strip("._") or "reader"
        path = folder / f"{stem}-{now:%Y%m%dT%H%M%S}.eml"
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path)
    conn = SmtpConnection(cfg, cfg.smtp_password())
    try:
        outcome = conn.send(composer.sender, ascii_address(profile.email), data)
    finally:
        conn.close()
    if outcome.status != "sent":
        raise SendError(f"{profile.email}: {kind} mail not taken: {outcome.reply}")
    log.info("%s mail sent (%s)", kind, outcome.reply)
    return outcome.reply
