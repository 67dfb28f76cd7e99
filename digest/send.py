"""Sending: the public face of MIME building (``mime``), SMTP (``smtp``) and delivery
(``deliver``). Import from here."""

from __future__ import annotations

from .deliver import DeliverySummary, Outgoing, deliver
from .mime import (
    build_message,
    check_unsubscribe_token,
    message_id,
    unsubscribe_url,
)

__all__ = [
    "DeliverySummary",
    "Outgoing",
    "build_message",
    "check_unsubscribe_token",
    "deliver",
    "message_id",
    "unsubscribe_url",
]
