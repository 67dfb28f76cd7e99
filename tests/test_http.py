"""Fetching feeds from a real HTTP server on loopback."""

from __future__ import annotations

from pathlib import Path

from pytest_httpserver import HTTPServer

from digest.config import Feed, Http
from digest.sources import Fetcher

FEEDS = Path(__file__).parent / "data" / "feeds"
HF = (FEEDS / "hf-daily-papers-2024-05-29.json").read_bytes()


class FakeTime:
    """A clock and a sleep that advance together, so tests never wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _fetcher(t: FakeTime, **http: object) -> Fetcher:
    opts = {"connect_timeout": 2.0, "read_timeout": 2.0, **http}
    return Fetcher(Http(**opts), "ops@example.org", sleep=t.sleep, clock=t.clock)  # type: ignore[arg-type]


def test_fetch_parses_and_sends_user_agent(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/daily", headers={"User-Agent": "digest/0.1.0 (+mailto:ops@example.org)"}
    ).respond_with_data(HF, content_type="application/json", headers={"ETag": '"v1"'})
    with _fetcher(FakeTime()) as f:
        result = f.fetch(Feed(name="hf", url=httpserver.url_for("/daily")))
    assert len(result.papers) == 8
    assert result.papers[0].sources == ("hf",)
    assert result.etag == '"v1"'
    assert not result.not_modified
