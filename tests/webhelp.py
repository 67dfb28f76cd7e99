"""A web site for tests: a project (config, one subscriber, a stored edition of real
papers), the real SMTP server on loopback, and the app of `digest serve` on it."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from digest.config import Config, load
from digest.sources import parse
from digest.store import Store
from tests.conftest import FEEDS, write_config, write_subscriber
from tests.smtpserver import SmtpServer

SECRET = "Zk3Jx9q2LmZ0aVb7TcWd1YpR5sNe8HfUo4GiKzQwErT"
BASE = "http://127.0.0.1:8080"
EDITION = date(2026, 6, 12)
START = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)
ADA = """\
# Ada's own notes: keep me.
email = "ada@example.org"
name = "Ada"
interests = "Large language models, reasoning and reinforcement learning from human feedback."
keywords = ["RLHF"]
# a key the web page does not know
min_score = 0.0
"""


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Site:
    root: Path
    config: Path
    cfg: Config
    smtp: SmtpServer
    clock: Clock = field(default_factory=Clock)

    def store(self) -> Store:
        return Store(self.cfg.database_url)

    def mails(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for _, _, raw in self.smtp.messages
        ]

    def last_text(self) -> str:
        msg = self.mails()[-1]
        part = msg.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def link(self, path: str, text: str | None = None, base: str = BASE) -> str:
        """The first link to ``path`` on the web app in a mail's text part."""
        text = text if text is not None else self.last_text()
        found = re.search(re.escape(base + path) + r"\?\S+", text)
        assert found, text
        return found.group(0)


def make_site(
    root: Path, smtp: SmtpServer, web: str = "", *, base: str = BASE, edition: bool = True
) -> Site:
    """The project; ``edition=False`` stores the papers without making an edition of
    them (so the first ``digest run`` makes today's)."""
    config = write_config(
        root,
        f'database = "sqlite:///{root / "digest.db"}"\n'
        f'[web]\nbase_url = "{base}"\nip_per_hour = 30\naddress_per_day = 3\n{web}\n',
        smtp=f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\ntimeout = 5\n',
    )
    write_subscriber(root / "subscribers", "ada", ADA)
    cfg = load(config)
    store = Store(cfg.database_url)
    try:
        papers = parse((FEEDS / "hf-daily-papers-2026-06-12.json").read_bytes(), "hf")
        store.upsert_papers(papers, START - timedelta(hours=2))
        if edition:
            store.edition_papers(EDITION, START - timedelta(hours=1))
    finally:
        store.close()
    return Site(root, config, cfg, smtp)


def site_context(root: Path, web: str = "") -> Iterator[Site]:
    with SmtpServer() as srv:
        yield make_site(root, srv, web)


def form_of(html: str, **extra: Any) -> dict[str, Any]:
    """The hidden inputs of the first form in ``html`` (its csrf token, version...)."""
    found = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    return {**{k: _unescape(v) for k, v in found.items()}, **extra}


def fields_of(page: str, **changes: Any) -> dict[str, Any]:
    """Every value the first form of ``page`` would send as shown (inputs, text areas,
    selected options, checked boxes), as a browser submits it; ``changes`` on top."""
    from html.parser import HTMLParser

    out: dict[str, Any] = {}

    class Form(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.depth = 0  # inside the first <form>: 1
            self.done = False
            self.select: str | None = None
            self.area: str | None = None

        def put(self, name: str, value: str, many: bool = False) -> None:
            if many:
                out.setdefault(name, []).append(value)
            else:
                out[name] = value

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = {k: v or "" for k, v in attrs}
            if tag == "form" and not self.done:
                self.depth = 1
            if not self.depth:
                return
            name = a.get("name", "")
            if tag == "input" and name and a.get("type") not in ("submit", "button"):
                if a.get("type") in ("checkbox", "radio"):
                    if "checked" in a:
                        out[name] = a.get("value", "on")
                else:
                    out[name] = a.get("value", "")
            elif tag == "textarea":
                self.area = name
                out[name] = ""
            elif tag == "select":
                self.select = name
                if "multiple" in a:
                    out[name] = []
            elif tag == "option" and self.select and "selected" in a:
                self.put(self.select, a.get("value", ""), isinstance(out.get(self.select), list))

        def handle_data(self, data: str) -> None:
            if self.area:
                out[self.area] += data

        def handle_endtag(self, tag: str) -> None:
            if tag == "textarea":
                if self.area and out[self.area].startswith("\n"):
                    out[self.area] = out[self.area][1:]  # as HTML drops it
                self.area = None
            elif tag == "select":
                self.select = None
            elif tag == "form" and self.depth:
                self.depth = 0
                self.done = True

    Form().feed(page)
    return {**out, **changes}


def _unescape(value: str) -> str:
    import html as h

    return h.unescape(value)
