"""`digest serve`'s pages, in process, on a real database file and the real SMTP server:
sign-up with double opt-in, unsubscribe (one-click too), preferences, votes, the digest
as sent, export and erasure; and each security rule of the issue."""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from starlette.testclient import TestClient

from digest.store import SentDigest
from digest.subscribers import load_profile
from digest.tokens import MANAGE, UNSUBSCRIBE, VIEW, VOTE, legacy_unsubscribe_token
from digest.web import create_app
from tests.conftest import ROOT
from tests.webhelp import BASE, EDITION, SECRET, Site, fields_of, form_of, site_context

HOSTILE_STRINGS = [
    '"""',
    "'''",
    "\\",
    'x"\n[evil]\nkey = "1',
    "<script>alert(1)</script>",
    "\u202eevil\u202c",
    "a\x00b\x1bc",
    "]]><!--",
    "Zoë & Ünïcode 🧪 \u2028 line",
    "{{ 7 * 7 }}",
    # and the hostile titles and authors the feed and rendering tests use
    *dict.fromkeys(
        s
        for c in json.loads((ROOT / "tests/data/render/hostile.json").read_text("utf-8"))
        for s in (c["paper"]["title"], *c["paper"].get("authors", ()))
    ),
]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)
    yield from site_context(tmp_path)


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    app = create_app(site.cfg, now=site.clock)
    with TestClient(app, base_url=BASE, client=("203.0.113.9", 5000)) as c:
        yield c


def signup(client: TestClient, data: dict[str, Any]) -> Any:
    """Send the sign-up form as a browser does: with the token of the form it was shown."""
    form = client.get("/subscribe")
    return client.post("/subscribe", data={**form_of(form.text), **data})


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def signed(site: Site, path: str, purpose: str, email: str = "ada@example.org", **q: str) -> str:
    scope = q.get("ed", "")
    token = site.cfg.link_tokens().make(purpose, email, scope=scope)
    query = "&".join(f"{k}={v}" for k, v in {"e": email, **q, "token": token}.items())
    return f"{path}?{query}"


SIGNUP = {
    "email": "grace@example.org",
    "name": "Grace",
    "interests": "Speech recognition and audio language models.",
    "keywords": "ASR, speaker verification",
    "authors": "Dupont, Jérôme\nYann LeCun",
    "categories": ["eess.AS", "cs.SD"],
    "exclude": "survey",
    "timezone": "Europe/Paris",
    "send_hour": "7",
    "frequency": "daily",
    "weekday": "monday",
    "max_papers": "8",
}


# ------------------------------------------------------------------ headers and plumbing


def test_healthz_and_the_security_headers_on_every_answer(client: TestClient) -> None:
    for path in ("/healthz", "/", "/subscribe", "/unsubscribe?e=a@b.org&token=x", "/nope"):
        r = client.get(path)
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "server" not in r.headers or "uvicorn" not in r.headers["server"]
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/unsubscribe?e=a@b.org&token=x").headers["cache-control"] == "no-store"
    css = client.get("/static/digest.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text


def test_a_body_over_the_limit_is_refused(client: TestClient) -> None:
    r = client.post(
        "/subscribe",
        content=b"email=" + b"a" * 20_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"a" * 1000

    r = client.post(
        "/subscribe",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413


def test_the_access_log_never_holds_a_query_string(
    client: TestClient, site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="digest.web.access")
    url = signed(site, "/preferences", MANAGE)
    assert client.get(url).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.web.access"]
    assert any('"GET /preferences" 200' in line for line in lines), lines
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert not any(token in line or "ada@example.org" in line for line in lines)


# ------------------------------------------------------------------ sign-up


def test_subscribe_confirm_with_a_post_and_only_once(client: TestClient, site: Site) -> None:
    r = signup(client, SIGNUP)
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert not (site.root / "subscribers" / "grace.toml").exists()  # nothing before confirming
    mail = site.mails()[-1]
    assert mail["To"] == "Grace <grace@example.org>"
    assert "List-Unsubscribe" not in mail and mail.get_body(("html",)) is not None
    link = site.link("/confirm")
    page = client.get(path_of(link))  # what a mail scanner does
    assert page.status_code == 200 and "Yes, subscribe me" in page.text
    assert client.get(path_of(link)).status_code == 200
    assert not (site.root / "subscribers" / "grace.toml").exists()  # a GET changes nothing
    assert client.post(path_of(link), data={"csrf": "forged"}).status_code == 403
    welcome = client.post(path_of(link), data=form_of(page.text))
    assert welcome.status_code == 200 and "You are subscribed" in welcome.text
    profile = load_profile(site.root / "subscribers" / "grace.toml")
    assert profile.categories == ("eess.AS", "cs.SD") and profile.send_hour == 7
    assert "Dupont, Jérôme" in profile.authors and profile.exclude == ("survey",)
    assert [k.term for k in profile.keywords] == ["ASR", "speaker verification"]
    again = client.post(path_of(link), data=form_of(page.text))
    assert again.status_code == 410  # single use
    assert client.get(path_of(link)).status_code == 410


def test_a_confirm_link_expires(client: TestClient, site: Site) -> None:
    signup(client, SIGNUP)
    link = site.link("/confirm")
    page = client.get(path_of(link))
    site.clock.advance(hours=49)
    assert client.get(path_of(link)).status_code == 410
    assert client.post(path_of(link), data=form_of(page.text)).status_code == 410
    assert not (site.root / "subscribers" / "grace.toml").exists()


def test_no_enumeration_a_known_address_gets_its_preferences_link(
    client: TestClient, site: Site
) -> None:
    new = signup(client, SIGNUP)
    known = signup(client, {**SIGNUP, "email": "ada@example.org"})
    assert known.status_code == new.status_code == 200
    assert known.text == new.text
    text = site.last_text()
    assert "already subscribed" in text and "/confirm" not in text
    page = client.get(path_of(site.link("/preferences", text)))
    assert page.status_code == 200 and "Your preferences" in page.text


def test_honeypot_and_rate_limits(client: TestClient, site: Site) -> None:
    bot = signup(client, {**SIGNUP, "website": "http://spam.example"})
    assert bot.status_code == 200 and "Check your inbox" in bot.text
    assert site.smtp.messages == []
    for _ in range(5):  # per address: 3 mails a day, then the same page and no mail
        assert signup(client, SIGNUP).status_code == 200
    assert len(site.smtp.messages) == 3
    site.clock.advance(days=1, minutes=1)
    signup(client, SIGNUP)
    assert len(site.smtp.messages) == 4


def test_rate_limit_per_ip_is_kept_in_the_database(site: Site) -> None:
    def attempt(app: Any, ip: str) -> int:
        with TestClient(app, base_url=BASE, client=(ip, 5000)) as c:
            return signup(c, {**SIGNUP, "email": "x@example.org", "website": ""}).status_code

    app = create_app(site.cfg, now=site.clock)
    codes = [attempt(app, "198.51.100.7") for _ in range(30)]
    assert codes == [200] * 30
    restarted = create_app(site.cfg, now=site.clock)  # a restart forgets nothing
    assert attempt(restarted, "198.51.100.7") == 429
    assert attempt(restarted, "198.51.100.8") == 200
    import hashlib
    import sqlite3

    from tests.test_web_digests import rows_naming

    # the counters are keyed hashes: neither the visitor's IP nor a plain hash of it
    assert rows_naming(site.root / "digest.db", "198.51.100.7") == []
    plain = hashlib.sha256(b"198.51.100.7").hexdigest()[:24]
    conn = sqlite3.connect(site.root / "digest.db")
    keys = [k for (k,) in conn.execute("SELECT key FROM rate_limit")]
    conn.close()
    assert keys and not any(plain in k or "x@example.org" in k for k in keys)


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_hostile_strings_break_neither_the_file_nor_the_page(
    client: TestClient, site: Site, hostile: str
) -> None:
    data = {
        **SIGNUP,
        "name": hostile,
        "interests": f"Speech {hostile} recognition",
        "keywords": hostile,
        "authors": hostile,
    }
    signup(client, data)
    link = site.link("/confirm")
    page = client.get(path_of(link))
    assert "<script>alert" not in page.text
    welcome = client.post(path_of(link), data=form_of(page.text))
    assert welcome.status_code == 200
    path = next((site.root / "subscribers").glob("*.toml"), None)
    files = [p for p in (site.root / "subscribers").glob("*.toml") if p.name != "ada.toml"]
    assert len(files) == 1, path
    data_back = tomllib.loads(files[0].read_text(encoding="utf-8"))
    assert set(data_back) <= {
        "email",
        "name",
        "interests",
        "keywords",
        "authors",
        "categories",
        "exclude",
        "timezone",
        "send_hour",
        "frequency",
        "weekday",
        "max_papers",
        "active",
    }
    load_profile(files[0])  # still a valid subscriber file
    prefs = client.get(
        path_of(site.link("/preferences", ""))
        if False
        else signed(site, "/preferences", MANAGE, "grace@example.org")
    )
    assert prefs.status_code == 200 and "<script>alert" not in prefs.text


def test_signup_closed_or_limited_to_domains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)
    for web, email, ok in (
        ('signup = "closed"', "grace@example.org", False),
        ('signup = "domains"\ndomains = ["lab.example.org"]', "grace@example.org", False),
        ('signup = "domains"\ndomains = ["lab.example.org"]', "grace@lab.example.org", True),
    ):
        folder = tmp_path / str(abs(hash((web, email))))
        for s in site_context(folder, web):
            with TestClient(create_app(s.cfg, now=s.clock), base_url=BASE) as c:
                r = signup(c, {**SIGNUP, "email": email})
                assert (r.status_code == 200) is ok, r.text
                assert bool(s.smtp.messages) is ok


# ------------------------------------------------------------------ unsubscribe


def test_unsubscribe_page_changes_nothing_on_get_and_unsubscribes_on_its_button(
    client: TestClient, site: Site
) -> None:
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    page = client.get(url)
    assert page.status_code == 200 and "Pause it instead" in page.text
    assert load_profile(site.root / "subscribers" / "ada.toml").active
    assert client.post(url, data={"action": "unsubscribe"}).status_code == 403  # no csrf
    done = client.post(url, data=form_of(page.text, action="unsubscribe"))
    assert done.status_code == 200 and "unsubscribed" in done.text
    text = (site.root / "subscribers" / "ada.toml").read_text()
    assert "active = false" in text and "# Ada's own notes: keep me." in text
    assert "ada@example.org" in site.store().suppressed()


def test_one_click_unsubscribe_as_a_mail_provider_sends_it(client: TestClient, site: Site) -> None:
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    r = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert not load_profile(site.root / "subscribers" / "ada.toml").active
    assert "ada@example.org" in site.store().suppressed()


def test_links_in_mail_already_sent_keep_working(client: TestClient, site: Site) -> None:
    old = legacy_unsubscribe_token(SECRET.encode(), "ada@example.org")
    url = f"/unsubscribe?e=ada@example.org&token={old}"
    r = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "ada@example.org" in site.store().suppressed()
    assert client.get(f"/preferences?e=ada@example.org&token={old}").status_code == 403


def test_pause_and_weekly_instead(client: TestClient, site: Site) -> None:
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    page = client.get(url)
    client.post(url, data=form_of(page.text, action="weekly"))
    assert load_profile(site.root / "subscribers" / "ada.toml").frequency == "weekly"
    client.post(url, data=form_of(page.text, action="pause"))
    assert not load_profile(site.root / "subscribers" / "ada.toml").active
    assert "ada@example.org" not in site.store().suppressed()  # paused, not unsubscribed


@pytest.mark.parametrize("token", ["é" * 22, "é" * 43, "x", "", "a" * 5000, "%00", "..."])
def test_a_malformed_token_is_just_an_invalid_link(client: TestClient, token: str) -> None:
    for path in ("/unsubscribe", "/preferences", "/view", "/vote"):
        r = client.get(f"{path}?e=ada@example.org&token={token}&ed=2026-06-12&p=x")
        assert r.status_code == 403, (path, r.status_code)
    r = client.post(
        f"/unsubscribe?e=ada@example.org&token={token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 400


def test_a_token_for_one_purpose_or_address_does_nothing_else(
    client: TestClient, site: Site
) -> None:
    manage = site.cfg.link_tokens().make(MANAGE, "ada@example.org")
    r = client.post(
        f"/unsubscribe?e=ada@example.org&token={manage}", data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 400
    unsub = site.cfg.link_tokens().make(UNSUBSCRIBE, "bob@example.org")
    r = client.post(
        f"/unsubscribe?e=ada@example.org&token={unsub}", data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 400
    assert load_profile(site.root / "subscribers" / "ada.toml").active


def test_csrf_token_of_another_link_is_refused(client: TestClient, site: Site) -> None:
    page = client.get(signed(site, "/preferences", MANAGE))
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    r = client.post(url, data=form_of(page.text, action="unsubscribe"))
    assert r.status_code == 403
    assert load_profile(site.root / "subscribers" / "ada.toml").active


# ------------------------------------------------------------------ preferences


def test_preferences_save_keeps_comments_and_unknown_keys(client: TestClient, site: Site) -> None:
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    assert page.status_code == 200 and "Large language models" in page.text
    form = form_of(
        page.text,
        **{
            **SIGNUP,
            "email": "ignored@example.org",
            "frequency": "weekly",
            "weekday": "friday",
            "action": "save",
        },
    )
    saved = client.post(url, data=form)
    assert saved.status_code == 200 and "Saved." in saved.text
    text = (site.root / "subscribers" / "ada.toml").read_text()
    assert "# Ada's own notes: keep me." in text and "# a key the web page does not know" in text
    assert "min_score = 0.0" in text and 'email = "ada@example.org"' in text
    p = load_profile(site.root / "subscribers" / "ada.toml")
    assert (
        p.frequency == "weekly" and p.weekday == "friday" and p.categories == ("eess.AS", "cs.SD")
    )


def test_preferences_preview_saves_nothing(client: TestClient, site: Site) -> None:
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    before = (site.root / "subscribers" / "ada.toml").read_text()
    r = client.post(url, data=form_of(page.text, **{**SIGNUP, "action": "preview"}))
    assert r.status_code == 200 and "What you would have got today" in r.text
    assert r.text.count('class="card"') >= 1 and "Why:" in r.text
    assert (site.root / "subscribers" / "ada.toml").read_text() == before


def test_preferences_refuse_to_overwrite_a_change_made_on_disk(
    client: TestClient, site: Site
) -> None:
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    path = site.root / "subscribers" / "ada.toml"
    path.write_text(path.read_text() + "max_papers = 3\n")
    r = client.post(url, data=form_of(page.text, **{**SIGNUP, "action": "save"}))
    assert r.status_code == 409 and "changed elsewhere" in r.text
    assert load_profile(path).max_papers == 3


def test_preferences_invalid_values_are_shown_not_saved(client: TestClient, site: Site) -> None:
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    before = (site.root / "subscribers" / "ada.toml").read_text()
    r = client.post(
        url,
        data=form_of(
            page.text, **{**SIGNUP, "timezone": "Mars/Olympus", "max_papers": "0", "action": "save"}
        ),
    )
    assert r.status_code == 400 and "time zone" in r.text
    assert (site.root / "subscribers" / "ada.toml").read_text() == before


def test_export_everything_and_erase(client: TestClient, site: Site) -> None:
    store = site.store()
    store.set_vote("ada@example.org", "2506.00001", 1, site.clock.now, source="web")
    store.record_digests(
        [SentDigest("ada@example.org", EDITION, (("2506.00001", 2.5, ("why",)),))], site.clock.now
    )
    store.set_delivery(
        "ada@example.org",
        EDITION,
        "sent",
        site.clock.now,
        message_id="<m@x>",
        papers=["2506.00001"],
    )
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    query = url.split("?", 1)[1]
    assert client.post("/preferences/export?" + query, data={"csrf": "nope"}).status_code == 403
    r = client.post("/preferences/export?" + query, data=form_of(page.text))
    assert r.headers["content-type"] == "application/json"
    data = json.loads(r.text)
    assert data["profile"]["name"] == "Ada" and "keep me" in data["subscriber_file"]
    assert data["votes"][0]["paper"] == "2506.00001" and data["deliveries"][0]["status"] == "sent"
    assert data["digests"][0]["papers"][0]["reasons"] == ["why"]
    not_sure = client.post("/preferences/erase?" + query, data=form_of(page.text))
    assert not_sure.status_code == 400 and (site.root / "subscribers" / "ada.toml").exists()
    gone = client.post("/preferences/erase?" + query, data=form_of(page.text, sure="yes"))
    assert gone.status_code == 200 and "erased" in gone.text
    assert not (site.root / "subscribers" / "ada.toml").exists()
    assert store.votes("ada@example.org") == {} and store.deliveries_of("ada@example.org") == []
    assert (
        store.sent_digests("ada@example.org") == [] and "ada@example.org" not in store.suppressed()
    )
    assert store.count_erased() == 1
    store.close()
    from tests.test_web_digests import rows_naming

    assert rows_naming(site.root / "digest.db", "ada@example.org") == []


# ------------------------------------------------------------------ votes and view


def _sent(site: Site) -> list[str]:
    store = site.store()
    papers = [p.id for p in store.edition_papers(EDITION, site.clock.now, create=False)][:3]
    store.record_digests(
        [
            SentDigest(
                "ada@example.org",
                EDITION,
                tuple((p, 3.0 - i, (f"reason {i}",)) for i, p in enumerate(papers)),
            )
        ],
        site.clock.now,
    )
    store.close()
    return papers


def test_votes_are_recorded_by_a_post_and_can_be_undone(client: TestClient, site: Site) -> None:
    papers = _sent(site)
    url = signed(site, "/vote", VOTE, ed=EDITION.isoformat(), p=papers[1], d="down")
    page = client.get(url)
    assert page.status_code == 200 and "Less like this?" in page.text
    assert site.store().votes("ada@example.org") == {}  # a GET records nothing
    r = client.post(url, data=form_of(page.text, vote="down"))
    assert "Noted: less like this" in r.text
    assert site.store().votes("ada@example.org")[papers[1]][0] == -1
    r = client.post(url, data=form_of(page.text, vote="clear"))
    assert site.store().votes("ada@example.org") == {}
    assert client.post(url, data={"vote": "up"}).status_code == 403


def test_a_vote_link_works_only_for_the_papers_of_its_digest(
    client: TestClient, site: Site
) -> None:
    papers = _sent(site)
    other = signed(site, "/vote", VOTE, ed="2026-06-11", p=papers[0], d="up")
    assert client.get(other).status_code == 404
    url = signed(site, "/vote", VOTE, ed=EDITION.isoformat(), p="9999.99999", d="up")
    assert client.get(url).status_code == 404
    good = signed(site, "/vote", VOTE, ed=EDITION.isoformat(), p=papers[0], d="up")
    moved = good.replace("ed=2026-06-12", "ed=2026-06-13")
    assert client.get(moved).status_code == 403


def test_view_in_browser_shows_the_digest_as_sent(client: TestClient, site: Site) -> None:
    papers = _sent(site)
    r = client.get(signed(site, "/view", VIEW, ed=EDITION.isoformat()))
    assert r.status_code == 200
    titles = [p.title for p in site.store().get_papers(papers)]
    positions = [r.text.find(t[:30].replace("&", "&amp;")) for t in titles]
    assert all(p > 0 for p in positions) and positions == sorted(positions)
    assert "reason 0" in r.text and "reason 2" in r.text
    assert (
        client.get(
            signed(site, "/view", VIEW, "bob@example.org", ed=EDITION.isoformat())
        ).status_code
        == 404
    )


# ------------------------------------------------------------------ public pages


def test_home_search_and_editions(client: TestClient, site: Site) -> None:
    home = client.get("/")
    assert home.status_code == 200 and home.text.count('class="card"') >= 5
    assert "Get papers like these in your inbox" in home.text
    assert client.get("/editions/2026-06-12").status_code == 200
    assert client.get("/editions/2020-01-01").status_code == 404
    assert client.get("/editions/garbage").status_code == 404
    r = client.get("/search?q=language+models")
    assert r.status_code == 200 and 'class="card"' in r.text and "Why:" in r.text
    sub = client.get("/subscribe?q=language+models")
    assert "language models</textarea>" in sub.text


def test_no_page_redirects_anywhere(client: TestClient, site: Site) -> None:
    for path in ("/", "/subscribe?next=https://evil.example", "/search?q=x&next=//evil.example"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code < 300 and "location" not in r.headers


def test_one_click_for_an_address_without_a_file_still_answers_200(
    client: TestClient, site: Site
) -> None:
    url = signed(site, "/unsubscribe", UNSUBSCRIBE, "gone@example.org")
    r = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "gone@example.org" in site.store().suppressed()


RICH = """\
# Grace's file, written by hand.
email = "grace@example.org"
name = "Grace"
interests = \"\"\"
Speech recognition and "text-to-speech" synthesis.
\"\"\"
keywords = ["ASR", { term = "speaker verification", weight = 2.5 }]  # what matters most
authors = ["Dupont, Jérôme"]
categories = ["eess.AS", "cs.SD"]
category_mode = "restrict"
min_score = 1.5
max_papers = 8
timezone = "Europe/Paris"
send_hour = 7
liked = ["2506.21576"]  # the page does not edit votes kept in the file
# disliked = ["2506.22001"]  (commented out)
disliked = []
"""


@pytest.mark.parametrize("name", ["ada", "grace"])
def test_preferences_saved_as_shown_leave_the_file_byte_for_byte(
    client: TestClient, site: Site, name: str
) -> None:
    from tests.webhelp import fields_of

    path = site.root / "subscribers" / f"{name}.toml"
    if name == "grace":
        path.write_text(RICH, encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    url = signed(site, "/preferences", MANAGE, f"{name}@example.org")
    page = client.get(url)
    assert page.status_code == 200
    saved = client.post(url, data=fields_of(page.text, action="save"))
    assert saved.status_code == 200 and "Saved." in saved.text
    assert path.read_text(encoding="utf-8") == before


def test_preferences_edit_weights_category_mode_and_min_score(
    client: TestClient, site: Site
) -> None:
    from tests.webhelp import fields_of

    path = site.root / "subscribers" / "grace.toml"
    path.write_text(RICH, encoding="utf-8")
    url = signed(site, "/preferences", MANAGE, "grace@example.org")
    page = client.get(url)
    form = fields_of(page.text)
    assert form["keywords"] == "ASR\nspeaker verification (weight 2.5)"
    assert form["category_mode"] == "restrict" and form["min_score"] == "1.5"
    bad = client.post(url, data={**form, "keywords": "ASR (weight 11)", "action": "save"})
    assert bad.status_code == 400 and "weight" in bad.text
    assert path.read_text(encoding="utf-8") == RICH
    changed = {
        **form,
        "keywords": "ASR (weight 3)\nspeaker verification (weight 2.5)\nbeamforming",
        "category_mode": "boost",
        "min_score": "0.5",
        "frequency": "weekly",
        "action": "save",
    }
    assert client.post(url, data=changed).status_code == 200
    text = path.read_text(encoding="utf-8")
    assert "# Grace's file, written by hand." in text and '# disliked = ["2506.22001"]' in text
    assert 'liked = ["2506.21576"]  # the page does not edit votes kept in the file' in text
    p = load_profile(path)
    assert [(k.term, k.weight) for k in p.keywords] == [
        ("ASR", 3.0),
        ("speaker verification", 2.5),
        ("beamforming", 1.0),
    ]
    assert (p.category_mode, p.min_score, p.frequency) == ("boost", 0.5, "weekly")
    assert p.liked == ("2506.21576",) and p.categories == ("eess.AS", "cs.SD")


def test_a_confirmed_sign_up_writes_weights_and_no_default(client: TestClient, site: Site) -> None:
    data = {**SIGNUP, "keywords": "ASR (weight 2)\nbeamforming", "min_score": "", "send_hour": ""}
    signup(client, {**data, "timezone": "UTC", "max_papers": "10"})
    link = site.link("/confirm")
    page = client.get(path_of(link))
    assert client.post(path_of(link), data=form_of(page.text)).status_code == 200
    path = site.root / "subscribers" / "grace.toml"
    text = path.read_text(encoding="utf-8")
    p = load_profile(path)
    assert [(k.term, k.weight) for k in p.keywords] == [("ASR", 2.0), ("beamforming", 1.0)]
    for default in ("category_mode", "min_score", "max_papers", "timezone", "active"):
        assert f"\n{default} =" not in text, text


def test_a_post_another_site_makes_a_browser_send_is_refused(
    client: TestClient, site: Site
) -> None:
    """Cross-site request forgery, beyond the page's own token: a POST that the browser
    says comes from another site changes nothing; the one-click unsubscribe, which mail
    providers send from wherever they are, still works."""
    url = signed(site, "/preferences", MANAGE)
    page = client.get(url)
    path = site.root / "subscribers" / "ada.toml"
    before = path.read_text()
    form = form_of(page.text, **{**SIGNUP, "frequency": "weekly", "action": "save"})
    for headers in (
        {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "http://127.0.0.1:8081"},
    ):
        r = client.post(url, data=form, headers=headers)
        assert r.status_code == 403, headers
        assert path.read_text() == before
    r = signup(client, {**SIGNUP, "email": "eve@example.org"})  # form fetched, then:
    forged = client.post(
        "/subscribe",
        data=form_of(client.get("/subscribe").text, **SIGNUP),
        headers={"sec-fetch-site": "cross-site"},
    )
    assert forged.status_code == 403 and len(site.smtp.messages) == 1
    # our own pages' forms: Origin "null" (they send no referrer), or same-origin
    for headers in ({"origin": "null"}, {"sec-fetch-site": "same-origin", "origin": BASE}):
        fresh = form_of(client.get(url).text)  # its version: the file changed since
        r = client.post(url, data={**form, **fresh}, headers=headers)
        assert r.status_code == 200 and "Saved." in r.text
    unsub = signed(site, "/unsubscribe", UNSUBSCRIBE)
    r = client.post(
        unsub,
        content=b"List-Unsubscribe=One-Click",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "sec-fetch-site": "cross-site",
            "origin": "https://mail.example",
        },
    )
    assert r.status_code == 200 and "ada@example.org" in site.store().suppressed()


def test_the_sign_up_form_carries_a_token_that_expires(client: TestClient, site: Site) -> None:
    r = client.post("/subscribe", data=SIGNUP)  # not sent from our page
    assert r.status_code == 400 and "open too long" in r.text and site.smtp.messages == []
    assert 'value="grace@example.org"' in r.text  # what was typed is kept
    shown = client.get("/subscribe")
    site.clock.advance(hours=25)
    r = client.post("/subscribe", data=form_of(shown.text, **SIGNUP))
    assert r.status_code == 400 and site.smtp.messages == []
    r = client.post("/subscribe", data=form_of(r.text, **SIGNUP))  # the fresh one it gave
    assert r.status_code == 200 and "Check your inbox" in r.text and len(site.smtp.messages) == 1


def test_subscribe_from_the_home_page(client: TestClient, site: Site) -> None:
    """The home page's own form: an address and interests are enough."""
    from tests.webhelp import fields_of

    home = client.get("/")
    form = fields_of(home.text.split('id="subscribe"', 1)[1])
    assert set(form) == {"csrf", "email", "website", "interests"}
    r = client.post(
        "/subscribe",
        data={**form, "email": "lin@example.org", "interests": "Graph neural networks."},
    )
    assert r.status_code == 200 and "Check your inbox" in r.text
    link = site.link("/confirm")
    page = client.get(path_of(link))
    assert client.post(path_of(link), data=form_of(page.text)).status_code == 200
    [path] = [p for p in (site.root / "subscribers").glob("*.toml") if p.name != "ada.toml"]
    p = load_profile(path)
    assert p.email == "lin@example.org" and p.interests == "Graph neural networks."


def scripted(page: str) -> list[str]:
    """What in ``page`` would run a script: a script element, an event handler attribute,
    a link that is not to this site or http(s)."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("script", "iframe", "object", "embed"):
                found.append(tag)
            for name, value in attrs:
                if name.startswith("on"):
                    found.append(f"{tag} {name}")
                links = name in ("href", "src", "action", "formaction") and value
                if links and not value.startswith(("/", "#", "http://", "https://")):
                    found.append(f"{tag} {name}={value}")

    Tags().feed(page)
    return found


def test_every_page_works_without_script_and_shows_hostile_papers_as_text(
    client: TestClient, site: Site
) -> None:
    """No page has a script, an event handler or a script link (the CSP would block them
    anyway): every page works with plain HTML forms. The feeds' hostile papers (the
    rendering tests' cases) show as text on the public pages and the reader's, with only
    http(s) links."""
    from digest.store import SentDigest
    from tests.test_render import HOSTILE, paper_from

    hostile = [paper_from(c["paper"]) for c in HOSTILE]
    store = site.store()
    store.upsert_papers(hostile, site.clock.now - timedelta(minutes=30))
    day = EDITION + timedelta(days=1)
    got = store.edition_papers(day, site.clock.now - timedelta(minutes=10))
    assert {p.id for p in hostile} <= {p.id for p in got}
    store.record_digests(
        [SentDigest("ada@example.org", day, tuple((p.id, 1.0, (p.title,)) for p in hostile))],
        site.clock.now,
    )
    store.close()
    prefs = signed(site, "/preferences", MANAGE)
    page = client.get(prefs)
    pages = {
        "home": client.get("/"),
        "edition": client.get(f"/editions/{day.isoformat()}"),
        "search": client.get("/search?q=" + quote("<script>alert(1)</script> inference")),
        "subscribe": client.get("/subscribe"),
        "preferences": page,
        "preview": client.post(prefs, data=fields_of(page.text, action="preview")),
        "unsubscribe": client.get(signed(site, "/unsubscribe", UNSUBSCRIBE)),
        "view": client.get(signed(site, "/view", VIEW, ed=day.isoformat())),
        "vote": client.get(signed(site, "/vote", VOTE, ed=day.isoformat(), p=hostile[1].id)),
        "invalid": client.get("/view?e=ada@example.org&token=x&ed=x"),
        "not found": client.get("/nope"),
        "form again": client.post("/subscribe", data={}),
    }
    for name, r in pages.items():
        assert r.headers["content-type"].startswith("text/html"), name
        assert scripted(r.text) == [], name
    for name in ("edition", "view"):
        text = pages[name].text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, name  # the title, as text
        assert "Fast &lt;img src=x onerror=alert(2)&gt; inference" in text, name
        assert "Injected body" in text and "Bcc: victim" in text
    assert "Links from a hostile feed" in pages["view"].text


def test_one_click_posts_for_one_address_at_once_all_answer_200(site: Site, tmp_path: Path) -> None:
    """Mail providers retry: many one-click POSTs for one address at once each unsubscribe
    it (one suppression, the file written whole), none fails."""
    import threading

    app = create_app(site.cfg, now=site.clock)
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    codes: list[int] = []
    with TestClient(app, base_url=BASE) as c:

        def post() -> None:
            codes.append(c.post(url, data={"List-Unsubscribe": "One-Click"}).status_code)

        threads = [threading.Thread(target=post) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert codes == [200] * 12
    assert not load_profile(site.root / "subscribers" / "ada.toml").active
    assert [p.name for p in (site.root / "subscribers").iterdir()] == ["ada.toml"]
    assert "ada@example.org" in site.store().suppressed()


def test_search_never_waits_for_a_rebuild_of_its_index(site: Site) -> None:
    """Indexing a year of papers takes minutes: a search ranks with the index it has while
    a new one is built for the papers added since, and uses the new one once it is done."""
    import threading

    from digest.sources import parse
    from digest.web._search import SearchIndex
    from tests.conftest import FEEDS

    store = site.store()
    gate = threading.Event()
    rebuilding = threading.Event()
    builds: list[int] = []

    class Gated:  # the store, with a rebuild held until the test lets it go
        def count_papers(self) -> int:
            return store.count_papers()

        def papers_seen_between(self, since: Any, until: Any) -> Any:
            builds.append(1)
            if len(builds) > 1:
                rebuilding.set()
                assert gate.wait(30)
            return store.papers_seen_between(since, until)

    index = SearchIndex(site.cfg.ranking, Gated(), site.clock, timedelta(minutes=10))  # type: ignore[arg-type]
    first = index.search("video generation with diffusion models", 5)
    assert first and len(builds) == 1  # the first index is waited for
    more = parse((FEEDS / "hf-daily-papers-2024-10-15.json").read_bytes(), "hf")
    store.upsert_papers(more, site.clock.now)
    assert index.search("video generation with diffusion models", 5) == first  # not looked yet
    site.clock.advance(minutes=11)
    during = index.search("video generation with diffusion models", 5)  # starts a rebuild,
    assert rebuilding.wait(30)  # the rebuild runs in its own thread...
    assert len(builds) == 2 and during == first  # ...held by the gate: the old index answers
    thread = index._thread
    gate.set()
    assert thread is not None
    thread.join(30)
    after = index.search("video generation with diffusion models", 5)
    new = {p.id for p in more} - {s.paper.id for s in first}
    assert any(s.paper.id in new for s in after), "the new papers are searched"
    store.close()


def test_an_unsubscribe_link_never_expires(client: TestClient, site: Site) -> None:
    url = signed(site, "/unsubscribe", UNSUBSCRIBE)
    site.clock.advance(days=3650)  # ten years on, from an old mail
    page = client.get(url)
    assert page.status_code == 200
    assert client.post(url, data=form_of(page.text, action="unsubscribe")).status_code == 200
    assert not load_profile(site.root / "subscribers" / "ada.toml").active
