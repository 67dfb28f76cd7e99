"""The links in the digests `digest run` sends, followed on the web app: a run with many
subscribers (rendered by the compiled fast path) gives every paper of every digest its
"more like this" / "less like this" links in both parts, and each link, like the "view in
browser" and preferences links, opens the right page for the right reader."""

from __future__ import annotations

import email
import email.policy
import html as htmllib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from digest.errors import ConfigError
from digest.pipeline import run, run_lock
from digest.rendering import Renderer
from digest.store import UP
from digest.web import create_app
from tests.conftest import write_subscriber
from tests.webhelp import BASE, EDITION, SECRET, Site, form_of, site_context

TOPICS = [
    "Large language models and reasoning",
    "Video generation with diffusion models",
    "Robot learning and manipulation",
    "Speech recognition and audio language models",
    "Reinforcement learning from human feedback",
    "Image segmentation and vision transformers",
    "Retrieval augmented generation and search",
    "Efficient inference, quantization and sparsity",
]
READERS = 40


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)
    yield from site_context(tmp_path)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def parts_of(raw: bytes) -> tuple[str, str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return str(msg["To"]), text, html


def links(text: str, path: str) -> list[str]:
    """Every link to ``path`` on the web app in a text part (a long link sits alone on
    its line)."""
    return re.findall(re.escape(BASE + path) + r"\?\S+", text)


def test_a_run_gives_every_paper_of_every_digest_its_vote_links(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(READERS):
        write_subscriber(
            site.root / "subscribers",
            f"reader{i:02d}",
            f'email = "reader{i:02d}@example.org"\n'
            f'interests = "{TOPICS[i % len(TOPICS)]}"\n'
            f"max_papers = {3 + i % 6}\nmin_score = 0.0\n",
        )
    made: list[bool] = []  # for each digest: did the compiled fast path make it?
    real = Renderer.render

    def spy(self: Renderer, *args: Any, **kw: Any) -> Any:
        out = real(self, *args, **kw)
        made.append(bool(out.html_parts) and self.fast is not None and not self.fast.disabled)
        return out

    monkeypatch.setattr(Renderer, "render", spy)
    with run_lock(site.cfg):
        summary = run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
    assert summary.delivery is not None and summary.delivery.ok
    digests = [parts_of(raw) for _, _, raw in site.smtp.messages]
    assert len(digests) == READERS + 1 and made == [True] * len(digests)

    app = create_app(site.cfg, now=site.clock)
    with TestClient(app, base_url=BASE) as client:
        for n, (to, text, html) in enumerate(digests):
            cards = text.count("\n* ")
            assert cards >= 1 and html.count('class="dg-card"') == cards
            votes = links(text, "/vote")
            assert len(votes) == 2 * cards, to
            ups, downs = votes[0::2], votes[1::2]
            assert all("&d=up&" in u for u in ups) and all("&d=down&" in d for d in downs)
            hrefs = re.findall(r'href="([^"]+/vote\?[^"]+)"', html)
            assert [htmllib.unescape(h) for h in hrefs] == votes
            ids = [re.search(r"&p=([^&\s]+)", u).group(1) for u in ups]  # type: ignore[union-attr]
            assert len(set(ids)) == cards
            if n % 10:  # every link of one digest in ten is followed
                continue
            recipient = re.search(r"[\w.]+@example\.org", to).group(0)  # type: ignore[union-attr]
            view = client.get(path_of(links(text, "/view")[0]))
            assert view.status_code == 200
            titles = re.findall(r'<h2 class="title"><a href="[^"]*">([^<]+)</a>', view.text)
            assert len(titles) == cards  # the same papers, in the same order, as sent
            flat = " ".join(text.split())
            positions = [flat.find(" ".join(htmllib.unescape(t).split())[:40]) for t in titles]
            assert all(p >= 0 for p in positions) and positions == sorted(positions)
            prefs = client.get(path_of(links(text, "/preferences")[0]))
            assert prefs.status_code == 200 and recipient in prefs.text
            for url in votes:
                page = client.get(path_of(url))
                assert page.status_code == 200
                assert ("More like this?" if "&d=up&" in url else "Less like this?") in page.text
            page = client.get(path_of(ups[0]))
            done = client.post(path_of(ups[0]), data=form_of(page.text, vote="up"))
            assert done.status_code == 200 and "Noted: more like this" in done.text
            assert site.store().votes(recipient)[ids[0]][0] == UP


def test_papers_dropped_to_fit_are_neither_in_the_view_nor_marked_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A digest cut down to keep its HTML under ``max_html_bytes`` is shown in the browser
    as it was sent: the papers left out are not on the page, and can come in a later
    digest."""
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)
    for site in site_context(tmp_path, "[render]\nmax_html_bytes = 20000\nabstract_chars = 150"):
        path = site.root / "subscribers" / "ada.toml"
        path.write_text(path.read_text() + "max_papers = 30\n")
        with run_lock(site.cfg):
            run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
        [(_, text, _)] = [parts_of(raw) for _, _, raw in site.smtp.messages]
        cards = text.count("\n* ")
        store = site.store()
        [held] = store.sent_digests("ada@example.org")
        assert 1 <= cards == len(held.papers) < 30
        with TestClient(create_app(site.cfg, now=site.clock), base_url=BASE) as client:
            view = client.get(path_of(links(text, "/view")[0]))
            assert view.text.count('<article class="card">') == cards
        sent = store.sent_paper_ids("ada@example.org")
        assert sent == {p for p, _, _ in held.papers}  # the others may come in a later one
        store.close()


def test_digest_preview_shows_the_links_a_run_would_send(site: Site, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    out = tmp_path / "preview"
    args = ["preview", "ada", "--config", str(site.config), "--out", str(out)]
    args += ["--edition", EDITION.isoformat()]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "ada.txt").read_text(encoding="utf-8")
    cards = text.count("\n* ")
    assert cards >= 1 and len(links(text, "/vote")) == 2 * cards
    assert links(text, "/view") and links(text, "/preferences")
    with TestClient(create_app(site.cfg, now=site.clock), base_url=BASE) as client:
        assert client.get(path_of(links(text, "/preferences")[0])).status_code == 200


def rows_naming(db: Path, needle: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row of every table of a SQLite database with ``needle`` in a text value."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                if any(isinstance(v, str) and needle in v.lower() for v in row):
                    found.append((table, row))
        return found
    finally:
        conn.close()


def test_an_erased_address_is_never_mailed_again(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Erasure on the preferences page leaves no row naming the address (delivery log,
    papers sent, digests held, votes, the file it was read from, a run's summary), only a
    keyed hash, which keeps it from being mailed even when its file comes back; the
    operator subscribing the address again lifts it."""
    from click.testing import CliRunner

    from digest.cli import main
    from digest.subscribers import ERASED_ADDRESS

    write_subscriber(
        site.root / "subscribers", "bob", 'email = "bob@example.org"\ninterests = "LLM"'
    )
    with run_lock(site.cfg):
        run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
    store = site.store()
    run_id = store.start_run(site.clock.now, EDITION)  # a run whose summary names her
    store.finish_run(run_id, site.clock.now, {"failed": [["Ada@Example.org", "550 no"]]})
    store.close()
    ada = site.root / "subscribers" / "ada.toml"
    backup = ada.read_text()
    [(_, text, _)] = [parts_of(raw) for _, to, raw in site.smtp.messages if "ada@" in to[0]]
    prefs = path_of(links(text, "/preferences")[0])
    with TestClient(create_app(site.cfg, now=site.clock), base_url=BASE) as client:
        page = client.get(prefs)
        assert client.post(path_of(links(text, "/vote")[0]), data={}).status_code == 403
        vote = client.get(path_of(links(text, "/vote")[0]))
        client.post(path_of(links(text, "/vote")[0]), data=form_of(vote.text, vote="up"))
        assert site.store().votes("ada@example.org")
        query = prefs.split("?", 1)[1]
        gone = client.post("/preferences/erase?" + query, data=form_of(page.text, sure="yes"))
        assert gone.status_code == 200 and not ada.exists()
    assert rows_naming(site.root / "digest.db", "ada@example.org") == []
    assert rows_naming(site.root / "digest.db", "bob@example.org")  # only hers went

    ada.write_text(backup)  # her file comes back (a backup restored, say)
    before = len(site.smtp.messages)  # her delivery rows went: the edition is due again
    with run_lock(site.cfg):
        summary = run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
    assert ("ada@example.org", ERASED_ADDRESS) in list(summary.skipped)
    assert not [to for _, to, _ in site.smtp.messages[before:] if "ada@" in to[0]]

    monkeypatch.delenv("DIGEST_UNSUBSCRIBE_SECRET")  # without the secret no run can tell
    with pytest.raises(ConfigError, match="erased address"), run_lock(site.cfg):
        run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)

    ada.unlink()  # the operator subscribes her again, as she asked
    args = ["subscribe", "ada@example.org", "--interests", "LLM", "--config", str(site.config)]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    with run_lock(site.cfg):
        run(site.cfg, now=site.clock, edition=EDITION, fetch=False)
    assert [to for _, to, _ in site.smtp.messages[before:] if "ada@" in to[0]]
