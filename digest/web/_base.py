"""What every page shares: the signed link a page was opened with and its CSRF token,
the templates, rate limits, the ranker (previews and search) and the mail a page sends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..clock import Clock, utcnow
from ..config import Config
from ..delivery import send_one
from ..errors import DigestError
from ..models import Paper, Profile, Scored
from ..ranking import Picker, Ranker
from ..rendering import Renderer, builtin_templates, clean_text, safe_url
from ..store import Store
from ..subscribers import SubscriberFile, read_subscriber
from ..tokens import ERASED, FORM, RATE, UNSUBSCRIBE
from ._forms import category_options, keyword_lines, timezone_list
from ._search import REFRESH, SearchIndex

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

FORM_AGE = timedelta(days=1)  # how long a sign-up form may stay open
CHANGED = (
    "Your subscription was changed elsewhere since you opened this page, so nothing was "
    "saved. Reload the page to see it as it is now."
)
ERASED_NOTE = (
    "Everything stored about you is erased. Only a keyed hash of your address is kept, so "
    "that you are never mailed again by mistake."
)


def template_dirs(cfg: Config) -> list[Path]:
    dirs = []
    if cfg.templates_path is not None and (cfg.templates_path / "web").is_dir():
        dirs.append(cfg.templates_path / "web")
    builtin = builtin_templates() / "web"
    if not builtin.is_dir():
        raise DigestError(f"web templates not found in {builtin}; reinstall digest")
    dirs.append(builtin)
    return dirs


@dataclass(frozen=True)
class Link:
    """A signed link a page was opened with: who it is for and its token."""

    email: str
    token: str
    purpose: str
    scope: str = ""


class Base:
    def __init__(self, cfg: Config, *, now: Clock = utcnow) -> None:
        self.cfg = cfg
        self.now = now
        self.store = Store(cfg.database_url)
        self.tokens = cfg.link_tokens()
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(cfg)]),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(
            site=cfg.sender.name,
            organization=cfg.sender.organization,
            postal_address=cfg.sender.postal_address,
            signup=cfg.web.signup,
            signup_domains=cfg.web.domains,
            category_options=category_options,
            timezone_list=timezone_list(),
        )
        self.templates = Jinja2Templates(env=env)
        self.css = template_dirs(cfg)[-1] / "digest.css"
        self._ranker: Ranker | None = None
        self._pickers: dict[tuple[Any, ...], Picker] = {}
        self._rank_lock = threading.Lock()
        self.search_index = SearchIndex(cfg.ranking, self.store, now, REFRESH)
        self._renderer: Renderer | None = None

    # ------------------------------------------------------------------ plumbing

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def invalid(self, request: Request, status: int = 403) -> Response:
        return self.page(request, "invalid.html.j2", status=status)

    def link(self, request: Request, purpose: str, scope: str = "") -> Link | None:
        """The reader a signed link is for, or None when its token does not check out."""
        q = request.query_params
        email, token = q.get("e", ""), q.get("token", "")
        if not email or not token or len(email) > 254:
            return None
        ok = (
            self.tokens.valid_unsubscribe(token, email)
            if purpose == UNSUBSCRIBE
            else self.tokens.valid(token, purpose, email, scope=scope)
        )
        return Link(email, token, purpose, scope) if ok else None

    def csrf(self, link: Link) -> str:
        return self.tokens.csrf(link.purpose, link.token, link.email)

    def csrf_ok(self, link: Link, form: FormData) -> bool:
        return self.tokens.valid_csrf(form.get("csrf"), link.purpose, link.token, link.email)

    def form_token(self) -> str:
        """The sign-up form's token (a POST carries a token, this one as any other): made
        when the form is shown, good for a day."""
        return self.tokens.make(FORM, "signup", issued=self.now())

    def form_token_ok(self, form: FormData) -> bool:
        token = form.get("csrf")
        return self.tokens.valid(token, FORM, "signup", max_age=FORM_AGE, now=self.now())

    def url(self, path: str, **params: str) -> str:
        """An absolute link for a mail (``[web] base_url``), with its query."""
        return self.cfg.web.base_url + path + ("?" + urlencode(params) if params else "")

    def signed(self, path: str, purpose: str, email: str, scope: str = "", **params: str) -> str:
        token = self.tokens.make(purpose, email, scope=scope)
        return self.url(path, e=email, **params, token=token)

    def client(self, request: Request) -> str:
        return request.client.host if request.client else "-"

    def rate_key(self, what: str, who: str) -> str:
        """The counter of ``who`` (an address, a visitor's IP) for ``what``: a keyed hash,
        so the database never holds who it counts."""
        return f"{what}:{self.tokens.make(RATE, who, scope=what)[:24]}"

    def limited(self, what: str, who: str, limit: int, window: timedelta) -> bool:
        """True when ``who`` is over its limit for ``what`` (counted in the database)."""
        return not self.store.hit(self.rate_key(what, who), limit, window, self.now())

    def hint(self, email: str) -> str:
        """The name of the file ``email`` was last read from, when the store knows it."""
        key = email.strip().lower()
        return self.store.subscriber_files([key]).get(key, "")

    def subscriber(self, email: str) -> SubscriberFile | None:
        """The reader's subscriber file: the one the store names first, else found by
        reading the folder (and then remembered, so the next page goes straight to it)."""
        hint = self.hint(email)
        found = read_subscriber(self.cfg, email, hint=hint)
        if found is not None and found.path.name != hint:
            key = email.strip().lower()
            self.store.remember_subscriber_files([(key, found.path.name)])
        return found

    def erased_hash(self, email: str) -> str:
        return self.tokens.make(ERASED, email)

    # ------------------------------------------------------------------ ranking

    def ranker(self) -> Ranker:
        if self._ranker is None:
            self._ranker = Ranker(self.cfg.ranking)
        return self._ranker

    def latest_edition(self) -> date | None:
        eds = self.store.editions()
        return eds[-1][0] if eds else None

    def picker(self, edition: date | None) -> Picker | None:
        """A picker over an edition's papers, kept while the app runs (previews)."""
        if edition is None:
            return None
        now = self.now()
        key: tuple[Any, ...] = ("edition", edition)
        with self._rank_lock:
            found = self._pickers.get(key)
            if found is None:
                papers = self.store.edition_papers(edition, now, create=False)
                if not papers:
                    return None
                if len(self._pickers) >= 8:
                    self._pickers.clear()
                found = self._pickers[key] = Picker(self.ranker(), self.store, edition, papers, now)
            return found

    def preview(self, profile: Profile, top: int = 10) -> list[Scored]:
        picker = self.picker(self.latest_edition())
        if picker is None:
            return []
        with self._rank_lock:
            return picker.ranker.rank(
                picker.corpus,
                profile,
                seen=set(),
                liked_papers=picker.liked_papers(profile),
                top=top,
            )

    # ------------------------------------------------------------------ mail

    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.cfg, fast=False)
        return self._renderer

    def mail(self, kind: str, email: str, name: str, subject: str, **extra: str) -> None:
        profile = Profile(email=email, name=name, interests="")
        rendered = self.renderer().render_note(
            f"{kind}.mjml.j2", f"{kind}.txt.j2", profile, subject, extra
        )
        try:
            send_one(self.cfg, profile, rendered, now=self.now(), kind=kind)
        except DigestError as exc:  # logged for the operator; the visitor sees the same page
            log.error("%s mail to a visitor not sent: %s", kind, exc)


def card(
    paper: Paper, scored: Scored | None = None, reasons: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What a page shows of a paper (every value escaped by the template)."""
    why = scored.reasons if scored is not None else reasons
    return {
        "id": paper.id,
        "title": clean_text(paper.title),
        "url": safe_url(paper.url) or safe_url(paper.hf_url or ""),
        "authors": ", ".join(paper.authors[:8]) + (" et al." if len(paper.authors) > 8 else ""),
        "summary": clean_text(paper.ai_summary or paper.abstract)[:600],
        "reasons": [clean_text(r) for r in why],
        "upvotes": paper.upvotes,
        "pdf_url": safe_url(paper.pdf_url or ""),
        "code_url": safe_url(paper.code_url or ""),
        "categories": list(paper.categories[:4]),
    }


def _empty_form() -> dict[str, Any]:
    return {
        "email": "",
        "name": "",
        "interests": "",
        "keywords": "",
        "authors": "",
        "exclude": "",
        "categories": [],
        "timezone": "UTC",
        "send_hour": "",
        "frequency": "daily",
        "weekday": "monday",
        "max_papers": "10",
        "category_mode": "boost",
        "min_score": "",
        "paused": False,
    }


def _form_echo(form: FormData) -> dict[str, Any]:
    """What was typed, to show it again beside its errors (escaped by the template)."""
    out: dict[str, Any] = {
        k: str(form.get(k, ""))[:4000] for k in _empty_form() if k != "categories"
    }
    out["categories"] = [str(c) for c in form.getlist("categories")][:50]
    out["paused"] = form.get("paused") == "on"
    return out


def _file_form(data: dict[str, Any]) -> dict[str, Any]:
    """A subscriber file's values as the form shows them."""

    def lines(value: Any) -> str:
        out = []
        for v in value or []:
            out.append(v.get("term", "") if isinstance(v, dict) else str(v))
        return "\n".join(out)

    score = data.get("min_score")
    return {
        **_empty_form(),
        "email": data.get("email", ""),
        "name": data.get("name", ""),
        "interests": data.get("interests", ""),
        "keywords": keyword_lines(data.get("keywords")),
        "authors": lines(data.get("authors")),
        "exclude": lines(data.get("exclude")),
        "categories": list(data.get("categories", [])),
        "timezone": data.get("timezone", "UTC"),
        "send_hour": "" if data.get("send_hour") is None else str(data.get("send_hour")),
        "frequency": data.get("frequency", "daily"),
        "weekday": data.get("weekday", "monday"),
        "max_papers": str(data.get("max_papers", 10)),
        "category_mode": data.get("category_mode", "boost"),
        "min_score": "" if score is None else f"{float(score):g}",
        "paused": data.get("active", True) is False,
    }
