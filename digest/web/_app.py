"""The subscribers' pages: sign-up with double opt-in, preferences, votes, the digest as
sent, unsubscribe (RFC 8058 one-click too), the public editions and search.

Every page that acts for a reader is opened with a signed link (``?e=<address>&token=``,
see ``digest.tokens``) and changes nothing on GET: the page's form POSTs back to the same
link with a CSRF token bound to it. The one-click unsubscribe POST a mail provider sends
is the one exception RFC 8058 defines: the signed link alone is enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import sysconfig
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..clock import Clock, utcnow
from ..config import Config
from ..delivery import send_one
from ..errors import DigestError, ProfileError
from ..models import Paper, Profile, Scored
from ..ranking import Picker, Ranker
from ..rendering import Renderer, clean_text, date_label, safe_url
from ..store import DOWN, UP, Store
from ..subscribers import (
    ChangedOnDisk,
    check_email,
    delete_subscriber_file,
    describe_timing,
    edition_for,
    normalize_email,
    profile_of,
    read_subscriber,
    subscribe,
    unsubscribe,
    update_subscriber,
)
from ..tokens import CONFIRM, MANAGE, UNSUBSCRIBE, VIEW, VOTE
from ._forms import categories, clean_line, file_data, profile_values, timezones
from ._security import Guard

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

BUILTIN = Path(__file__).resolve().parents[2] / "templates" / "web"
_INSTALLED = (
    Path(sysconfig.get_path("data")) / "share" / "digest" / "templates" / "web",
    Path(sys.prefix) / "share" / "digest" / "templates" / "web",
)
ERASED = "erased"  # the purpose of the keyed hash an erased address leaves behind
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
    for builtin in (BUILTIN, *_INSTALLED):
        if builtin.is_dir():
            dirs.append(builtin)
            break
    else:
        raise DigestError(f"web templates not found in {BUILTIN}; reinstall digest")
    return dirs


@dataclass(frozen=True)
class Link:
    """A signed link a page was opened with: who it is for and its token."""

    email: str
    token: str
    purpose: str
    scope: str = ""


class WebApp:
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
            categories=categories(),
            timezones=timezones(),
        )
        self.templates = Jinja2Templates(env=env)
        self.css = template_dirs(cfg)[-1] / "digest.css"
        self._ranker: Ranker | None = None
        self._pickers: dict[tuple[Any, ...], Picker] = {}
        self._rank_lock = threading.Lock()
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

    def url(self, path: str, **params: str) -> str:
        """An absolute link for a mail (``[web] base_url``), with its query."""
        return self.cfg.web.base_url + path + ("?" + urlencode(params) if params else "")

    def signed(self, path: str, purpose: str, email: str, scope: str = "", **params: str) -> str:
        token = self.tokens.make(purpose, email, scope=scope)
        return self.url(path, e=email, **params, token=token)

    def client(self, request: Request) -> str:
        return request.client.host if request.client else "-"

    def limited(self, what: str, who: str, limit: int, window: timedelta) -> bool:
        """True when ``who`` is over its limit for ``what`` (counted in the database)."""
        key = f"{what}:{hashlib.sha256(who.encode()).hexdigest()[:24]}"
        return not self.store.hit(key, limit, window, self.now())

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
        """A picker over an edition's papers (or every stored paper, for search), kept
        while the papers stay the same."""
        now = self.now()
        if edition is None:
            key: tuple[Any, ...] = ("all", self.store.count_papers())
        else:
            key = ("edition", edition)
        with self._rank_lock:
            found = self._pickers.get(key)
            if found is None:
                papers = (
                    self.store.papers_seen_between(None, now)
                    if edition is None
                    else self.store.edition_papers(edition, now, create=False)
                )
                if not papers:
                    return None
                if len(self._pickers) >= 8:
                    self._pickers.clear()
                found = self._pickers[key] = Picker(
                    self.ranker(), self.store, edition or now.date(), papers, now
                )
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

    # ------------------------------------------------------------------ routes

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

    def healthz(self, request: Request, form: FormData) -> Response:
        self.store.count_erased()  # the database answers
        return JSONResponse({"ok": True})

    # ---- public pages

    def home(self, request: Request, form: FormData) -> Response:
        editions = [d for d, _ in self.store.editions()]
        day_text = request.path_params.get("day")
        if day_text is not None:
            try:
                day: date | None = date.fromisoformat(day_text)
            except ValueError:
                return self.page(request, "notfound.html.j2", status=404)
            if day not in editions:
                return self.page(request, "notfound.html.j2", status=404)
        else:
            day = editions[-1] if editions else None
        papers = self.store.edition_papers(day, self.now(), create=False) if day else []
        papers.sort(key=lambda p: (-(p.upvotes or 0), p.id))
        before = [d for d in editions if day and d < day][-7:]
        return self.page(
            request,
            "home.html.j2",
            day=day,
            day_label=date_label(day) if day else "",
            cards=[card(p) for p in papers[:50]],
            earlier=list(reversed(before)),
            form=_empty_form(),
            errors={},
        )

    def search(self, request: Request, form: FormData) -> Response:
        q = clean_line(request.query_params.get("q", ""), 300)
        results: list[dict[str, Any]] = []
        if q:
            picker = self.picker(None)
            if picker is not None:
                profile = Profile(email="search@invalid.example", interests=q)
                with self._rank_lock:
                    scored = picker.ranker.rank(
                        picker.corpus, profile, seen=set(), top=self.cfg.web.search_results
                    )
                results = [card(s.paper, s) for s in scored]
        return self.page(request, "search.html.j2", q=q, cards=results)

    # ---- sign-up

    def subscribe(self, request: Request, form: FormData) -> Response:
        closed = self.cfg.web.signup == "closed"
        if request.method == "GET":
            prefill = _empty_form()
            prefill["interests"] = clean_line(request.query_params.get("q", ""), 300)
            return self.page(request, "subscribe.html.j2", form=prefill, errors={}, closed=closed)
        if closed:
            return self.page(
                request, "subscribe.html.j2", status=403, form=_empty_form(), errors={}, closed=True
            )
        if form.get("website"):  # the honeypot: people do not see it, form-filling bots do
            return self.page(request, "check-inbox.html.j2")
        if self.limited(
            "subscribe-ip", self.client(request), self.cfg.web.ip_per_hour, timedelta(hours=1)
        ):
            return self.page(request, "slow-down.html.j2", status=429)
        raw = clean_line(str(form.get("email", "")), 254)
        errors: dict[str, str] = {}
        try:
            email = check_email(raw)
        except ValueError:
            email = ""
            errors["email"] = "That does not look like an email address."
        if email and self.cfg.web.signup == "domains":
            domain = email.rsplit("@", 1)[-1].lower()
            if domain not in self.cfg.web.domains:
                errors["email"] = (
                    "Sign-up is open to addresses at " + ", ".join(self.cfg.web.domains) + " only."
                )
        values, problems = profile_values(form, email=email or "someone@example.org")
        errors.update(problems)
        if errors:
            shown = {**_empty_form(), **_form_echo(form)}
            return self.page(
                request, "subscribe.html.j2", status=400, form=shown, errors=errors, closed=False
            )
        key = normalize_email(email)
        if not self.limited(
            "subscribe-address", key, self.cfg.web.address_per_day, timedelta(days=1)
        ):
            self._mail_signup(key, email, values)
        # The same answer whether the address is new, known or over its limit.
        return self.page(request, "check-inbox.html.j2")

    def _mail_signup(self, key: str, email: str, values: dict[str, Any]) -> None:
        current = read_subscriber(self.cfg, key)
        known = (
            current is not None
            and current.data.get("active", True) is not False
            and key not in self.store.suppressed()
        )
        name = str(values.get("name", ""))
        if known:  # they are subscribed already: mail them their own page instead
            assert current is not None
            self.mail(
                "known",
                email,
                str(current.data.get("name", "")),
                "Your paper digest subscription",
                manage_url=self.signed("/preferences", MANAGE, key),
            )
            return
        ttl = timedelta(hours=self.cfg.web.confirm_hours)
        pending = self.store.add_pending(key, {"email": email, **values}, self.now(), ttl)
        token = self.tokens.make(CONFIRM, key, scope=pending.id, issued=self.now())
        self.mail(
            "confirm",
            email,
            name,
            "Confirm your paper digest subscription",
            confirm_url=self.url("/confirm", id=pending.id, token=token),
            hours=str(self.cfg.web.confirm_hours),
        )

    def confirm(self, request: Request, form: FormData) -> Response:
        pid = request.query_params.get("id", "")
        token = request.query_params.get("token", "")
        now = self.now()
        pending = self.store.pending(pid, now) if 0 < len(pid) <= 64 else None
        max_age = timedelta(hours=self.cfg.web.confirm_hours)
        if pending is None or not self.tokens.valid(
            token, CONFIRM, pending.email, scope=pending.id, max_age=max_age, now=now
        ):
            return self.page(request, "expired.html.j2", status=410)
        link = Link(pending.email, token, CONFIRM, pending.id)
        if request.method == "GET":  # mail scanners follow links: a GET changes nothing
            return self.page(
                request,
                "confirm.html.j2",
                email=pending.data.get("email", pending.email),
                csrf=self.csrf(link),
            )
        if not self.csrf_ok(link, form):
            return self.invalid(request)
        taken = self.store.take_pending(pending.id, now)
        if taken is None or not self.store.use_token(token, now):
            return self.page(request, "expired.html.j2", status=410)
        data = dict(taken.data)
        email = str(data.pop("email", taken.email))
        try:
            subscribe(
                self.cfg,
                self.store,
                email,
                now=now,
                name=str(data.get("name", "")),
                interests=str(data.get("interests", "")),
                keywords=list(data.get("keywords", [])),
            )
        except ProfileError as exc:
            if "already subscribed" not in str(exc):
                raise
        current = read_subscriber(self.cfg, email)
        if current is not None:
            rest = {k: v for k, v in data.items() if k not in ("email",)}
            rest["active"] = True
            current = update_subscriber(self.cfg, email, rest, version=current.version)
        self.store.forget_erased(self.erased_hash(email))
        profile = profile_of(current.data, current.path) if current else None
        picks = self.preview(profile, top=5) if profile else []
        return self.page(
            request,
            "welcome.html.j2",
            when=describe_timing(profile) if profile else "",
            next_edition=date_label(edition_for(self.cfg, now)),
            cards=[card(s.paper, s) for s in picks],
            manage_url=self.signed("/preferences", MANAGE, taken.email),
        )

    # ---- unsubscribe

    def unsubscribe(self, request: Request, form: FormData) -> Response:
        link = self.link(request, UNSUBSCRIBE)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if link is None:
            if one_click:
                return PlainTextResponse("This unsubscribe link is not valid.\n", status_code=400)
            return self.invalid(request)
        email = link.email
        if request.method == "GET":
            return self.page(request, "unsubscribe.html.j2", email=email, csrf=self.csrf(link))
        if one_click:  # RFC 8058: a mail provider's POST, no page, done at once
            unsubscribe(
                self.cfg,
                self.store,
                email,
                now=self.now(),
                reason="one-click unsubscribe (RFC 8058)",
            )
            return PlainTextResponse("Unsubscribed.\n")
        if not self.csrf_ok(link, form):
            return self.invalid(request)
        action = form.get("action")
        manage_url = self.signed("/preferences", MANAGE, email)
        if action == "pause" or action == "weekly":
            current = read_subscriber(self.cfg, email)
            if current is None:
                return self.page(
                    request,
                    "done.html.j2",
                    message="There is no subscription for this address.",
                    manage_url="",
                )
            change = {"active": False} if action == "pause" else {"frequency": "weekly"}
            update_subscriber(self.cfg, email, change, version=current.version)
            message = (
                "Your digest is paused. Resume it from your preferences whenever you like."
                if action == "pause"
                else "You will get one digest a week, on "
                + str(current.data.get("weekday", "monday")).capitalize()
                + "s."
            )
            return self.page(request, "done.html.j2", message=message, manage_url=manage_url)
        unsubscribe(self.cfg, self.store, email, now=self.now(), reason="unsubscribed on the web")
        return self.page(
            request,
            "done.html.j2",
            message="You are unsubscribed: no more digests will be sent to this address.",
            manage_url="",
        )

    # ---- preferences

    def preferences(self, request: Request, form: FormData) -> Response:
        link = self.link(request, MANAGE)
        if link is None:
            return self.invalid(request)
        current = read_subscriber(self.cfg, link.email)
        if current is None:
            return self.page(
                request,
                "done.html.j2",
                status=404,
                message="There is no subscription for this address any more.",
                manage_url="",
            )
        base: dict[str, Any] = dict(
            csrf=self.csrf(link),
            email=link.email,
            action_url=request.url.path + "?" + request.url.query,
        )
        if request.method == "GET":
            return self.page(
                request,
                "preferences.html.j2",
                form=_file_form(current.data),
                version=current.version,
                errors={},
                picks=None,
                saved=False,
                **base,
            )
        if not self.csrf_ok(link, form):
            return self.invalid(request)
        values, errors = profile_values(form, email=link.email)
        values["active"] = form.get("paused") != "on"
        version = str(form.get("version", ""))
        shown = {**_empty_form(), **_form_echo(form)}
        if errors:
            return self.page(
                request,
                "preferences.html.j2",
                status=400,
                form=shown,
                version=version,
                errors=errors,
                picks=None,
                saved=False,
                **base,
            )
        if form.get("action") == "preview":
            profile = profile_of(file_data(link.email, values), current.path)
            picks = [card(s.paper, s) for s in self.preview(profile)]
            return self.page(
                request,
                "preferences.html.j2",
                form=shown,
                version=version,
                errors={},
                picks=picks,
                saved=False,
                **base,
            )
        try:
            saved = update_subscriber(self.cfg, link.email, values, version=version)
        except ChangedOnDisk:
            return self.page(
                request,
                "preferences.html.j2",
                status=409,
                form=shown,
                version=version,
                errors={"form": CHANGED},
                picks=None,
                saved=False,
                **base,
            )
        except ProfileError as exc:
            return self.page(
                request,
                "preferences.html.j2",
                status=400,
                form=shown,
                version=version,
                errors={"form": str(exc).split(": ", 1)[-1]},
                picks=None,
                saved=False,
                **base,
            )
        return self.page(
            request,
            "preferences.html.j2",
            form=_file_form(saved.data),
            version=saved.version,
            errors={},
            picks=None,
            saved=True,
            **base,
        )

    def export(self, request: Request, form: FormData) -> Response:
        link = self.link(request, MANAGE)
        if link is None or not self.csrf_ok(link, form):
            return self.invalid(request)
        key = link.email.lower()
        current = read_subscriber(self.cfg, key)
        suppressions = self.store.suppressions()
        data = {
            "email": key,
            "subscriber_file": current.text if current else None,
            "profile": current.data if current else None,
            "votes": [
                {"paper": p, "vote": v, "at": at.isoformat()}
                for p, (v, at) in self.store.votes(key).items()
            ],
            "deliveries": [
                {"edition": d.edition.isoformat(), "status": d.status, "message_id": d.message_id}
                for d in self.store.deliveries_of(key)
            ],
            "digests": [
                {
                    "edition": s.edition.isoformat(),
                    "papers": [{"id": p, "score": sc, "reasons": list(r)} for p, sc, r in s.papers],
                }
                for s in self.store.sent_digests(key)
            ],
            "suppressed": suppressions[key][0].isoformat() if key in suppressions else None,
        }
        body = json.dumps(data, ensure_ascii=False, indent=2, default=str)
        return Response(
            body,
            media_type="application/json",
            headers={"content-disposition": 'attachment; filename="my-paper-digest.json"'},
        )

    def erase(self, request: Request, form: FormData) -> Response:
        link = self.link(request, MANAGE)
        if link is None or not self.csrf_ok(link, form):
            return self.invalid(request)
        if form.get("sure") != "yes":
            return self.page(
                request,
                "done.html.j2",
                status=400,
                message="Nothing was erased: tick the box to confirm.",
                manage_url=request.url.path.replace("/erase", "") + "?" + request.url.query,
            )
        key = link.email.lower()
        delete_subscriber_file(self.cfg, key)
        self.store.forget_votes(key)
        self.store.forget_reader(key)
        self.store.add_erased(self.erased_hash(key), self.now())
        return self.page(
            request,
            "done.html.j2",
            message=ERASED_NOTE,
            manage_url="",
        )

    # ---- votes

    def vote(self, request: Request, form: FormData) -> Response:
        ed_text = request.query_params.get("ed", "")
        paper_id = request.query_params.get("p", "")[:64]
        link = self.link(request, VOTE, ed_text)
        if link is None:
            return self.invalid(request)
        try:
            edition = date.fromisoformat(ed_text)
        except ValueError:
            return self.invalid(request)
        sent = self.store.sent_digest(link.email, edition)
        if sent is None or paper_id not in {p for p, _, _ in sent.papers}:
            return self.page(request, "notfound.html.j2", status=404)
        papers = self.store.get_papers([paper_id])
        if not papers:
            return self.page(request, "notfound.html.j2", status=404)
        direction = request.query_params.get("d", "up")
        value = {"up": UP, "down": DOWN}.get(direction, UP)
        recorded = self.store.votes(link.email).get(paper_id, (0, None))[0]
        if request.method == "POST":
            if not self.csrf_ok(link, form):
                return self.invalid(request)
            choice = form.get("vote")
            value_new = {"up": UP, "down": DOWN, "clear": 0}.get(str(choice))
            if value_new is None:
                return self.invalid(request, status=400)
            self.store.set_vote(link.email, paper_id, value_new, self.now(), source="web")
            recorded = value_new
        return self.page(
            request,
            "vote.html.j2",
            card=card(papers[0]),
            asked=value,
            recorded=recorded,
            csrf=self.csrf(link),
            action_url=request.url.path + "?" + request.url.query,
        )

    # ---- view in browser

    def view(self, request: Request, form: FormData) -> Response:
        ed_text = request.query_params.get("ed", "")
        link = self.link(request, VIEW, ed_text)
        if link is None:
            return self.invalid(request)
        sent = self.store.sent_digest(link.email, date.fromisoformat(ed_text))
        if sent is None:
            return self.page(request, "notfound.html.j2", status=404)
        found = {p.id: p for p in self.store.get_papers([p for p, _, _ in sent.papers])}
        cards = [
            card(found[pid], reasons=reasons) for pid, _, reasons in sent.papers if pid in found
        ]
        return self.page(
            request,
            "view.html.j2",
            day_label=date_label(sent.edition),
            cards=cards,
            manage_url=self.signed("/preferences", MANAGE, link.email),
        )


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

    keywords = data.get("keywords", [])
    if isinstance(keywords, dict):
        keywords = list(keywords)
    return {
        **_empty_form(),
        "email": data.get("email", ""),
        "name": data.get("name", ""),
        "interests": data.get("interests", ""),
        "keywords": lines(keywords),
        "authors": lines(data.get("authors")),
        "exclude": lines(data.get("exclude")),
        "categories": list(data.get("categories", [])),
        "timezone": data.get("timezone", "UTC"),
        "send_hour": "" if data.get("send_hour") is None else str(data.get("send_hour")),
        "frequency": data.get("frequency", "daily"),
        "weekday": data.get("weekday", "monday"),
        "max_papers": str(data.get("max_papers", 10)),
        "paused": data.get("active", True) is False,
    }


def create_app(cfg: Config, *, now: Clock = utcnow) -> Starlette:
    """The ASGI app of ``digest serve``."""
    web = WebApp(cfg, now=now)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        web.store.close()

    app = Starlette(routes=web.routes(), lifespan=lifespan)
    app.state.web = web
    guarded = Guard(
        app, max_body=cfg.web.max_body_bytes, https=cfg.web.base_url.startswith("https")
    )
    return guarded  # type: ignore[return-value]
