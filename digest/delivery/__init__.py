"""Delivery: each rendered digest to its subscriber once, over SMTP or into the outbox.

``deliver`` takes a stream of ``Outgoing`` digests and returns a ``DeliverySummary``; every
(subscriber, edition) moves through the store's delivery log (pending -> sending -> sent /
deferred / failed), so a rerun sends only what is not sent and a crash loses nothing.
Inside: ``_headers`` (addresses, Message-ID, the signed unsubscribe URL, RFC 2047),
``_mime`` (message bytes), ``_dkim`` (signatures), ``_smtp`` (one connection), ``_pool``
(parallel connections, rate limits, the stop rules), ``_log`` (the log's values, claims and
group commit), ``_claims`` (who is sending what: claim tokens, leases, runs that died),
``_outbox`` (``.eml`` files) and ``_deliver`` (one run).
"""

from __future__ import annotations

import logging

from ..config import Config
from ..errors import ConfigError, SendError
from ._claims import Claimant, gone
from ._deliver import deliver
from ._dkim import dkim_configured
from ._headers import (
    ascii_address,
    check_unsubscribe_token,
    clean,
    domain_of,
    message_id,
    signed_url,
    unsubscribe_base,
    unsubscribe_secret,
    unsubscribe_url,
)
from ._log import DeliverySummary, Outgoing
from ._mime import Composer, build_message
from ._single import send_one
from ._smtp import check_relay, tls_context

log = logging.getLogger(__name__)

__all__ = [
    "Claimant",
    "Composer",
    "DeliverySummary",
    "Outgoing",
    "build_message",
    "check_config",
    "check_relay",
    "check_unsubscribe_token",
    "config_notes",
    "deliver",
    "gone",
    "message_id",
    "send_one",
    "signed_url",
    "unsubscribe_base",
    "unsubscribe_secret",
    "unsubscribe_url",
]


def check_config(cfg: Config, *, strict: bool = False) -> None:
    """What sending needs beyond the file: addresses, the unsubscribe URL and secret (long
    and random enough to sign links), the DKIM key (parsed and tried), the SMTP password
    and CA file. Raises ConfigError (or SendError for an unreadable CA bundle); nothing is
    sent. A weak secret is refused when ``strict`` and only logged otherwise."""
    Composer(cfg)
    if unsubscribe_base(cfg) or cfg.web.base_url:
        try:
            cfg.check_link_secret()
        except ConfigError as exc:
            if strict:  # `digest check` and `digest serve` refuse it; a run only warns
                raise
            log.warning("%s", exc)
    if cfg.smtp.host:
        cfg.smtp_password()
        if cfg.smtp.security != "none":
            tls_context(cfg)


def config_notes(cfg: Config) -> list[str]:
    """What is allowed but unwise in the sending part of the config, one line each (``digest
    check`` lists them; a run logs them once)."""
    notes = []
    if cfg.smtp.host and not unsubscribe_base(cfg):
        notes.append(
            "[unsubscribe] url is not set: messages carry only a mailto: unsubscribe link; "
            "Gmail and Yahoo require one-click unsubscribe (RFC 8058) from bulk senders"
        )
    d = clean(cfg.dkim.domain).lower() if dkim_configured(cfg) else ""
    try:
        domain = domain_of(ascii_address(cfg.sender.address))
    except SendError:  # check_config says what is wrong with it
        domain = d
    if d and not (domain == d or domain.endswith("." + d)):
        notes.append(
            f"[dkim] domain {d} is not the From domain {domain} (or a parent of it): the "
            "signature will not align for DMARC"
        )
    return notes
