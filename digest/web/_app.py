"""The subscribers' pages: sign-up with double opt-in, preferences, votes, the digest as
sent, unsubscribe (RFC 8058 one-click too), the public editions and search.

Every page that acts for a reader is opened with a signed link (``?e=<address>&token=``,
see ``digest.tokens``) and changes nothing on GET: the page's form POSTs back to the same
link with a CSRF token bound to it. The one-click unsubscribe POST a mail provider sends
is the one exception RFC 8058 defines: the signed link alone is enough.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..clock import Clock, utcnow
from ..config import Config
from ._base import Handler
from ._pages import Pages
from ._reader import Reader
from ._security import Guard


class WebApp(Pages, Reader):
    """The app's pages, with their routes."""

    def routes(self) -> list[Route]:
        def threaded(fn: Callable[..., Response]) -> Handler:
            async def handler(request: Request) -> Response:
                form = await request.form() if request.method == "POST" else FormData()
                return await run_in_threadpool(fn, request, form)

            return handler

        return [
            Route("/healthz", threaded(self.healthz)),
            Route("/static/digest.css", self.static),
            Route("/", threaded(self.home)),
            Route("/editions/{day}", threaded(self.home)),
            Route("/search", threaded(self.search)),
            Route("/subscribe", threaded(self.subscribe), methods=["GET", "POST"]),
            Route("/confirm", threaded(self.confirm), methods=["GET", "POST"]),
            Route("/unsubscribe", threaded(self.unsubscribe), methods=["GET", "POST"]),
            Route("/preferences", threaded(self.preferences), methods=["GET", "POST"]),
            Route("/preferences/export", threaded(self.export), methods=["POST"]),
            Route("/preferences/erase", threaded(self.erase), methods=["POST"]),
            Route("/vote", threaded(self.vote), methods=["GET", "POST"]),
            Route("/view", threaded(self.view)),
        ]

    async def static(self, request: Request) -> Response:
        return FileResponse(
            self.css, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
        )


def _origin(scheme: str, host: str, port: int | None) -> str:
    """The Origin a browser sends for pages at this address ("" when there is none)."""
    if not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def create_app(cfg: Config, *, now: Clock = utcnow, index_now: bool = False) -> Starlette:
    """The ASGI app of ``digest serve``; ``index_now`` starts indexing the stored papers
    for search at once, in the background (else at the first search, which waits)."""
    web = WebApp(cfg, now=now)
    if index_now:
        web.search_index.start()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        web.store.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return web.page(request, "notfound.html.j2", status=404)

    app = Starlette(routes=web.routes(), lifespan=lifespan, exception_handlers={404: not_found})
    app.state.web = web
    base = urlsplit(cfg.web.base_url)
    guarded = Guard(
        app,
        max_body=cfg.web.max_body_bytes,
        https=base.scheme == "https",
        origin=_origin(base.scheme, base.hostname or "", base.port),
    )
    return guarded  # type: ignore[return-value]
