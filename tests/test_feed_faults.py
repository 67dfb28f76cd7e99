"""One bad feed never stops the others, the send, or the next run: hostile and broken feeds
served by a real HTTP server on loopback, a real database, the real run."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from digest.config import load
from digest.pipeline import RunSummary, run, run_lock
from digest.store import Store

from .conftest import FEEDS, write_config, write_subscriber
from .test_e2e import run_cli

GOOD = (FEEDS / "hf-daily-papers-2026-06-12.json").read_bytes()
T0 = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)


def hf(**paper: Any) -> bytes:
    """One Hugging Face daily-papers entry with the given inner fields."""
    inner = {"id": "2406.99999", "title": "A hostile paper", "summary": "An abstract.", **paper}
    return json.dumps([{"paper": inner, "title": inner["title"]}]).encode()


JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "papers",
        "items": [
            {
                "id": "https://arxiv.org/abs/2406.99998",
                "url": "https://arxiv.org/abs/2406.99998",
                "title": "Tags and authors of the wrong type",
                "content_text": "An abstract.",
                "tags": 5,
                "authors": 5,
            }
        ],
    }
).encode()

# Each case: what the feed serves, and what the bad feed's health must say afterwards
# (None: the feed is read, the bad values left out; else words of its one-line failure).
CASES: dict[str, tuple[bytes, str | None]] = {
    "hf-wrong-types": (hf(authors=5, ai_keywords=7), None),
    "jsonfeed-wrong-types": (JSON_FEED, None),
    "nested-1100-deep": (b"[" * 1100 + b"]" * 1100, "nested too deep"),
    "5000-digit-integer": (
        hf(upvotes=1).replace(b'"upvotes": 1', b'"upvotes": ' + b"9" * 5000),
        "does not parse",
    ),
    "upvotes-10e30": (hf(upvotes=10**30, githubStars=-4), None),
    "date-past-the-last-datetime": (hf(publishedAt="9999-12-31T23:59:59-23:59"), None),
}


class Project:
    def __init__(self, root: Path, server: HTTPServer, feeds: list[tuple[str, str]]) -> None:
        self.root = root
        self.config = write_config(
            root,
            "[http]\nretries = 0\n",
            feeds=[(name, server.url_for(path)) for name, path in feeds],
        )
        write_subscriber(
            root / "subscribers",
            "ada",
            'email = "ada@example.org"\ninterests = "language models, reasoning, vision, agents"\n',
        )

    def run(self, when: datetime = T0) -> RunSummary:
        cfg = load(self.config)
        with run_lock(cfg):
            return run(cfg, now=lambda: when)

    def store(self) -> Store:
        return Store(load(self.config).database_url)

    def sent(self) -> list[Path]:
        return sorted((self.root / "outbox").rglob("*.eml"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_feed_costs_only_itself(
    case: str, httpserver: HTTPServer, tmp_path: Path
) -> None:
    body, failure = CASES[case]
    httpserver.expect_request("/bad").respond_with_data(body, content_type="application/json")
    httpserver.expect_request("/good").respond_with_data(GOOD, content_type="application/json")
    # the bad feed first: the feeds after it are fetched all the same
    p = Project(tmp_path, httpserver, [("bad", "/bad"), ("good", "/good")])
    summary = p.run()
    assert summary.fetch is not None
    assert ("good", 30) in summary.fetch.ok
    assert len(p.sent()) == 1  # the send goes on
    store = p.store()
    try:
        health = {s.name: s for s in store.feed_states()}
        if failure is None:
            assert summary.ok and health["bad"].failures == 0
            [paper] = store.get_papers(["2406.99999"]) or store.get_papers(["2406.99998"])
            assert paper.authors == () and paper.ai_keywords == () and paper.categories == ()
            assert paper.upvotes is None and paper.github_stars is None
            assert paper.published is None
        else:
            assert not summary.ok  # exit 1
            [(name, reason)] = summary.fetch.errors
            assert name == "bad" and failure in reason and "\n" not in reason
            assert health["bad"].failures == 1 and failure in (health["bad"].last_error or "")
        assert health["good"].failures == 0
    finally:
        store.close()


def test_an_etag_that_cannot_be_sent_back_is_not_kept(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """A non-ASCII ETag / Last-Modified used to be stored and then break every later
    request with UnicodeEncodeError."""
    seen: list[dict[str, str]] = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(
            GOOD,
            content_type="application/json",
            headers={"ETag": '"caf\u00e9"', "Last-Modified": "Thu, 28 Nov 2024 14:47:20 GMT\u00e9"},
        )

    httpserver.expect_request("/hf").respond_with_handler(handler)
    p = Project(tmp_path, httpserver, [("hf", "/hf")])
    first = p.run()
    assert first.ok and first.fetch is not None and first.fetch.ok == [("hf", 30)]
    store = p.store()
    try:
        state = store.feed_state("hf")
        assert state.etag is None and state.last_modified is None
        # a database that kept such a value before is healed: the value is not sent
        store.record_feed("hf", httpserver.url_for("/hf"), T0, etag='"\u00e9t\u00e9"', count=30)
    finally:
        store.close()
    second = p.run(T0.replace(day=13))
    assert second.ok and second.fetch is not None and second.fetch.ok == [("hf", 30)]
    assert len(seen) == 2 and "If-None-Match" not in seen[1]


def _papers_titled_boom_fail_to_insert(db: Path) -> None:
    """A database that refuses some rows (here a trigger; in life a constraint, a full
    disk): the store raises an error the sources know nothing about."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON paper WHEN NEW.title LIKE 'Boom%' "
            "BEGIN SELECT RAISE(ABORT, 'no papers called Boom'); END"
        )


def boom_feed() -> bytes:
    return hf(id="2406.77777", title="Boom goes the feed")


def test_an_unexpected_error_in_one_feed_is_its_own_one_line_failure(
    httpserver: HTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/boom").respond_with_data(
        boom_feed(), content_type="application/json"
    )
    httpserver.expect_request("/good").respond_with_data(GOOD, content_type="application/json")
    p = Project(tmp_path, httpserver, [("boom", "/boom"), ("good", "/good")])
    p.store().close()  # creates the tables
    _papers_titled_boom_fail_to_insert(tmp_path / "digest.db")
    with caplog.at_level(logging.DEBUG, logger="digest"):
        summary = p.run()
    assert summary.fetch is not None and not summary.ok
    [(name, reason)] = summary.fetch.errors
    assert name == "boom" and "unexpected IntegrityError" in reason and "\n" not in reason
    assert ("good", 30) in summary.fetch.ok and len(p.sent()) == 1
    traced = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert traced and "no papers called Boom" in str(traced[0].exc_info[1])  # type: ignore[index]
    # recorded, so the next run knows and goes on the same way
    store = p.store()
    try:
        assert store.feed_state("boom").failures == 1
    finally:
        store.close()
    again = p.run(T0.replace(day=13))
    assert again.fetch is not None and [n for n, _ in again.fetch.errors] == ["boom"]


def test_digest_run_with_broken_feeds_exits_1_in_one_line_each_and_sends(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/deep").respond_with_data(b"[" * 1100 + b"]" * 1100)
    httpserver.expect_request("/boom").respond_with_data(
        boom_feed(), content_type="application/json"
    )
    httpserver.expect_request("/good").respond_with_data(GOOD, content_type="application/json")
    p = Project(tmp_path, httpserver, [("deep", "/deep"), ("boom", "/boom"), ("good", "/good")])
    p.store().close()
    _papers_titled_boom_fail_to_insert(tmp_path / "digest.db")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(p.config), cwd=tmp_path)

    first = cli("run")
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert "feed failed: deep: JSON nested too deep" in first.stderr  # the name said once
    assert "feed failed: boom: unexpected IntegrityError" in first.stderr
    assert "delivery via" in first.stdout and "1 sent" in first.stdout
    feeds = cli("feeds")
    assert feeds.returncode == 1
    lines = feeds.stdout.splitlines()
    assert any(line.startswith("deep: ") and "FAILING (1 in a row)" in line for line in lines)
    assert any(line.startswith("boom: ") and "FAILING (1 in a row)" in line for line in lines)
    assert any(line.startswith("good: ") and "FAILING" not in line for line in lines)
    status = cli("status")
    assert status.returncode == 1 and "Traceback" not in status.stderr
