"""The public pages and sign-up: home, earlier editions, search, subscribe (double opt-in)
and confirm."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ProfileError
from ..rendering import date_label
from ..subscribers import (
    check_email,
    describe_timing,
    edition_for,
    normalize_email,
    profile_of,
    subscribe,
    update_subscriber,
)
from ..tokens import CONFIRM, MANAGE
from ._base import Base, Link, _empty_form, _form_echo, card
from ._forms import changes, clean_line, profile_values


class Pages(Base):
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
            csrf=self.form_token() if self.cfg.web.signup != "closed" else "",
        )

    def search(self, request: Request, form: FormData) -> Response:
        q = clean_line(request.query_params.get("q", ""), 300)
        results: list[dict[str, Any]] = []
        if q:
            scored = self.search_index.search(q, self.cfg.web.search_results)
            results = [card(s.paper, s) for s in scored]
        return self.page(request, "search.html.j2", q=q, cards=results)

    # ---- sign-up

    def subscribe(self, request: Request, form: FormData) -> Response:
        closed = self.cfg.web.signup == "closed"
        if request.method == "GET":
            prefill = _empty_form()
            prefill["interests"] = clean_line(request.query_params.get("q", ""), 300)
            return self.page(
                request,
                "subscribe.html.j2",
                form=prefill,
                errors={},
                closed=closed,
                csrf=self.form_token(),
            )
        if closed:
            return self.page(
                request, "subscribe.html.j2", status=403, form=_empty_form(), errors={}, closed=True
            )
        if form.get("website"):  # the honeypot: people do not see it, form-filling bots do
            return self.page(request, "check-inbox.html.j2")
        if not self.form_token_ok(form):  # open too long, or not sent from our page
            return self.page(
                request,
                "subscribe.html.j2",
                status=400,
                form={**_empty_form(), **_form_echo(form)},
                errors={"form": "This form was open too long. Check it and send it again."},
                closed=False,
                csrf=self.form_token(),
            )
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
                request,
                "subscribe.html.j2",
                status=400,
                form=shown,
                errors=errors,
                closed=False,
                csrf=self.form_token(),
            )
        key = normalize_email(email)
        if not self.limited(
            "subscribe-address", key, self.cfg.web.address_per_day, timedelta(days=1)
        ):
            self._mail_signup(key, email, values)
        # The same answer whether the address is new, known or over its limit.
        return self.page(request, "check-inbox.html.j2")

    def _mail_signup(self, key: str, email: str, values: dict[str, Any]) -> None:
        current = self.subscriber(key)
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
                # their weights, if any, are set with the rest below
                keywords=[
                    k["term"] if isinstance(k, dict) else k for k in data.get("keywords", [])
                ],
            )
        except ProfileError as exc:
            if "already subscribed" not in str(exc):
                raise
        current = self.subscriber(email)
        if current is not None:
            rest = {k: v for k, v in data.items() if k not in ("email",)}
            rest["active"] = True
            current = update_subscriber(
                self.cfg,
                email,
                changes(rest, current.data),
                version=current.version,
                hint=current.path.name,
            )
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
