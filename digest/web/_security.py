"""What every response and request goes through: security headers, a cap on the body, no
POST from another site, and an access log without query strings (tokens and addresses
live there)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("digest.web.access")

# No script at all, styles and images only from this site, forms only to this site, and
# never inside a frame. Tokens live in URLs: no Referer leaves a page.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=(), browsing-topics=()"),
]


class Guard:
    """ASGI middleware: security headers on every answer (``no-store`` on pages opened
    with a token), 413 for a body over ``max_body`` bytes (by Content-Length, and by what
    arrives when there is none), 403 for a POST a browser says comes from another site,
    and one access-log line per request: method, path without its query, status,
    milliseconds."""

    def __init__(self, app: ASGIApp, *, max_body: int, https: bool, origin: str = "") -> None:
        self.app = app
        self.max_body = max_body
        self.https = https
        self.origin = origin.encode()  # the site's own, scheme://host[:port]; "": any

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        private = b"token=" in scope.get("query_string", b"") or scope["method"] == "POST"
        length = 0
        site = origin = b""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = self.max_body + 1
            elif name == b"sec-fetch-site":
                site = value
            elif name == b"origin":
                origin = value
        if length > self.max_body:
            await _too_large(send)
            _log(scope, 413, start)
            return
        # The body is read here, whole and bounded, before the app sees any of it: a
        # request without Content-Length (chunked) is counted as it arrives.
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                _log(scope, 499, start)
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _too_large(send)
                _log(scope, 413, start)
                return
            more = message.get("more_body", False)
        if scope["method"] == "POST" and self._foreign(site, origin, scope, body):
            await _refuse(send)
            _log(scope, 403, start)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        async def headed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k != b"cache-control"
                ] + HEADERS
                if private:
                    headers.append((b"cache-control", b"no-store"))
                else:
                    kept = [v for k, v in message.get("headers", []) if k == b"cache-control"]
                    headers += [(b"cache-control", v) for v in kept]
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, replay, headed)
        finally:
            _log(scope, status or 500, start)

    def _foreign(self, site: bytes, origin: bytes, scope: Scope, body: bytearray) -> bool:
        """Whether a browser sent this POST from another site (cross-site request forgery
        that the page's token did not already stop): what it says in Sec-Fetch-Site, else
        in Origin ("null" is what our no-referrer pages' own forms send). The one-click
        unsubscribe of RFC 8058 comes from mail providers, from wherever they are."""
        if scope.get("path") == "/unsubscribe" and body == b"List-Unsubscribe=One-Click":
            return False
        if site:
            return site not in (b"same-origin", b"none")
        return bool(origin) and origin != b"null" and bool(self.origin) and origin != self.origin


async def _refuse(send: Send) -> None:
    body = b"Forms are sent from this site's own pages only.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send) -> None:
    body = b"Request too large.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _log(scope: Scope, status: int, start: float) -> None:
    client: Any = scope.get("client") or ("-", 0)
    access_log.info(
        '%s "%s %s" %d %.1fms',
        client[0],
        scope.get("method", "-"),
        scope.get("path", "-"),  # never the query string
        status,
        (time.perf_counter() - start) * 1000,
    )
