"""Sending, as the rest of the project sees it. Import from here.

``headers`` (addresses, Message-ID, unsubscribe URL, RFC 2047), ``mime`` (message bytes),
``dkim`` (signatures), ``smtp`` (one connection), ``smtppool`` (parallel connections,
rate limits), ``deliverylog`` (the log's values and group commit) and ``deliver`` (a run).
"""

from __future__ import annotations

from .config import Config
from .deliver import DeliverySummary, Outgoing, deliver
from .headers import check_unsubscribe_token, message_id, unsubscribe_url
from .mime import Composer, build_message
from .smtp import tls_context


def check_config(cfg: Config) -> None:
    """What sending needs beyond the file: addresses, the unsubscribe URL and secret, the
    DKIM key (parsed and tried), the SMTP password and CA file. Raises ConfigError (or
    SendError for an unreadable CA bundle); nothing is sent."""
    Composer(cfg)
    if cfg.smtp.host:
        cfg.smtp_password()
        if cfg.smtp.security != "none":
            tls_context(cfg)


__all__ = [
    "DeliverySummary",
    "Outgoing",
    "build_message",
    "check_config",
    "check_unsubscribe_token",
    "deliver",
    "message_id",
    "unsubscribe_url",
]
