"""A reader's own pages, each opened with a signed link: unsubscribe (RFC 8058 one-click
too), preferences, export and erasure, votes, the digest as sent."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import ProfileError
from ..rendering import date_label
from ..store import DOWN, UP
from ..subscribers import (
    ChangedOnDisk,
    delete_subscriber_file,
    profile_of,
    unsubscribe,
    update_subscriber,
)
from ..tokens import MANAGE, UNSUBSCRIBE, VIEW, VOTE
from ._base import CHANGED, ERASED_NOTE, Base, _empty_form, _file_form, _form_echo, card
from ._forms import changes, file_data, profile_values


class Reader(Base):
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
                unknown_ok=True,
            )
            return PlainTextResponse("Unsubscribed.\n")
        if not self.csrf_ok(link, form):
            return self.invalid(request)
        action = form.get("action")
        manage_url = self.signed("/preferences", MANAGE, email)
        if action == "pause" or action == "weekly":
            current = self.subscriber(email)
            if current is None:
                return self.page(
                    request,
                    "done.html.j2",
                    message="There is no subscription for this address.",
                    manage_url="",
                )
            change = {"active": False} if action == "pause" else {"frequency": "weekly"}
            update_subscriber(
                self.cfg, email, change, version=current.version, hint=current.path.name
            )
            message = (
                "Your digest is paused. Resume it from your preferences whenever you like."
                if action == "pause"
                else "You will get one digest a week, on "
                + str(current.data.get("weekday", "monday")).capitalize()
                + "s."
            )
            return self.page(request, "done.html.j2", message=message, manage_url=manage_url)
        # A signed link is proof enough that the address was on the list.
        unsubscribe(
            self.cfg,
            self.store,
            email,
            now=self.now(),
            reason="unsubscribed on the web",
            unknown_ok=True,
        )
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
        current = self.subscriber(link.email)
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
            saved = update_subscriber(
                self.cfg,
                link.email,
                changes(values, current.data),
                version=version,
                hint=current.path.name,
            )
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
        current = self.subscriber(key)
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
        delete_subscriber_file(self.cfg, key, hint=self.hint(key))
        self.store.forget_votes(key)
        self.store.forget_reader(key, rate_keys=[self.rate_key("subscribe-address", key)])
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
        vote = self.tokens.make(VOTE, link.email, scope=ed_text)
        cards = []
        for pid, _, reasons in sent.papers:
            if pid in found:
                c = card(found[pid], reasons=reasons)
                q = {"e": link.email, "ed": ed_text, "p": pid}
                c["more_url"] = "/vote?" + urlencode({**q, "d": "up", "token": vote})
                c["less_url"] = "/vote?" + urlencode({**q, "d": "down", "token": vote})
                cards.append(c)
        return self.page(
            request,
            "view.html.j2",
            day_label=date_label(sent.edition),
            cards=cards,
            manage_url=self.signed("/preferences", MANAGE, link.email),
        )
