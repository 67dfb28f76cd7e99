"""The web app, ``digest serve``: the subscribers' side (sign-up with double opt-in,
preferences, votes, the digest in a browser, unsubscribe with RFC 8058 one-click) and the
public editions and search; an entry point beside the CLI, sharing the database and
``subscribers/`` with ``digest run``.

``_app`` holds the routes, ``_pages`` the public pages and sign-up, ``_reader`` a reader's
own pages, ``_base`` what they share, ``_forms`` the profile form (cleaned, bounded,
validated by the schema ``digest check`` uses), ``_security`` what every request goes
through (headers, body size, an access log without query strings); ``serve`` runs it
under uvicorn.
"""

from __future__ import annotations

import logging

from ..config import Config
from ._app import WebApp, create_app

__all__ = ["WebApp", "create_app", "serve"]

log = logging.getLogger(__name__)


def serve(cfg: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Run the app under uvicorn until SIGTERM or Ctrl-C (one process; put a TLS reverse
    proxy in front, see contrib/)."""
    import uvicorn

    cfg.check_link_secret()
    app = create_app(cfg, index_now=True)
    proxies = cfg.web.proxy_ips
    uvicorn.run(
        app,
        host=host or cfg.web.host,
        port=port or cfg.web.port,
        access_log=False,  # ours leaves the query string (tokens, addresses) out
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
