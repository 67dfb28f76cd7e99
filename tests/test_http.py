"""Fetching feeds from real HTTP servers on loopback: conditional GET, retries, limits."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from digest.config import Feed, Http
from digest.errors import FeedError
from digest.sources import Fetcher, hf_urls
from digest.store import Store

FEEDS = Path(__file__).parent / "data" / "feeds"
HF = (FEEDS / "hf-daily-papers-2024-05-29.json").read_bytes()
ARXIV_RSS = (FEEDS / "arxiv-rss-new-format-2024-11-28-trimmed.xml").read_bytes()
API = (FEEDS / "arxiv-api-query-2026-06-14.atom").read_bytes()
UA = "digest/0.1.0 (+mailto:ops@example.org)"


class FakeTime:
    """A clock and a sleep that advance together, so tests never wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


class Loopback(httpx.HTTPTransport):
    """Sends requests for any host to the local test server, keeping the Host header,
    so the arxiv.org pacing and the Hugging Face query options are exercised for real."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)


def _fetcher(
    t: FakeTime, *, transport: httpx.BaseTransport | None = None, **http: float
) -> Fetcher:
    opts: dict[str, float] = {"connect_timeout": 2.0, "read_timeout": 2.0, **http}
    return Fetcher(
        Http.model_validate(opts),
        "ops@example.org",
        sleep=t.sleep,
        clock=t.clock,
        transport=transport,
    )


def test_fetch_parses_and_sends_user_agent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/daily", headers={"User-Agent": UA}).respond_with_data(
        HF, content_type="application/json", headers={"ETag": '"v1"'}
    )
    with _fetcher(FakeTime()) as f:
        result = f.fetch(Feed(name="hf", url=httpserver.url_for("/daily")))
    assert len(result.papers) == 8
    assert result.papers[0].sources == ("hf",)
    assert result.etag == '"v1"'
    assert not result.not_modified


def test_second_fetch_of_unchanged_feed_is_a_304(httpserver: HTTPServer, tmp_path: Path) -> None:
    url = httpserver.url_for("/rss")
    lm = "Thu, 28 Nov 2024 14:47:20 GMT"
    httpserver.expect_ordered_request("/rss").respond_with_data(
        ARXIV_RSS,
        content_type="application/rss+xml",
        headers={"ETag": '"abc"', "Last-Modified": lm},
    )
    httpserver.expect_ordered_request(
        "/rss", headers={"If-None-Match": '"abc"', "If-Modified-Since": lm}
    ).respond_with_data(b"", status=304)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    feed = Feed(name="arxiv", url=url)
    now = datetime(2024, 11, 28, tzinfo=UTC)
    with _fetcher(FakeTime()) as f:
        first = f.fetch(feed, store.feed_state("arxiv"))
        assert len(first.papers) == 68
        store.record_feed("arxiv", url, now, etag=first.etag, last_modified=first.last_modified)
        second = f.fetch(feed, store.feed_state("arxiv"))
    store.close()
    httpserver.check_assertions()
    assert second.not_modified and second.papers == []
    assert second.etag == '"abc"' and second.last_modified == lm


def test_stored_etag_of_another_url_is_not_sent(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/new").respond_with_handler(
        lambda r: Response(b"{}" if "If-None-Match" in r.headers else HF, status=200)
    )
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.record_feed("hf", "http://old.example/feed", datetime(2024, 1, 1, tzinfo=UTC), etag='"x"')
    with _fetcher(FakeTime()) as f:
        result = f.fetch(Feed(name="hf", url=httpserver.url_for("/new")), store.feed_state("hf"))
    store.close()
    assert len(result.papers) == 8


def test_429_with_retry_after_is_retried_after_that_delay(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/f").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/f").respond_with_handler(
        lambda _: Response(  # Retry-After as an HTTP date, 30 s after the server's Date
            "busy", status=503, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}
        )
    )
    httpserver.expect_ordered_request("/f").respond_with_data(
        "x", status=429, headers={"Retry-After": "3600"}
    )
    httpserver.expect_ordered_request("/f").respond_with_data(HF, content_type="application/json")
    t = FakeTime()
    with _fetcher(t, retries=3, max_retry_after=60) as f:
        result = f.fetch(Feed(name="hf", url=httpserver.url_for("/f")))
    assert len(result.papers) == 8
    # seconds, an HTTP date (whole seconds: 29 to 31 s), a long one capped by max_retry_after
    assert t.sleeps[0] == 7.0 and 29 <= t.sleeps[1] <= 31 and t.sleeps[2] == 60.0


def test_5xx_backs_off_then_fails_with_a_clear_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/f").respond_with_data("oops", status=502)
    t = FakeTime()
    with _fetcher(t, retries=2, backoff=1.5) as f, pytest.raises(FeedError) as err:
        f.fetch(Feed(name="broken", url=httpserver.url_for("/f")))
    assert t.sleeps == [1.5, 3.0]
    msg = str(err.value)
    assert "broken" in msg and "HTTP 502" in msg and "after 2 retries" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("status", "words"), [(404, "HTTP 404 Not Found; check the feed url"), (500, "HTTP 500")]
)
def test_error_statuses_are_feed_errors(httpserver: HTTPServer, status: int, words: str) -> None:
    httpserver.expect_request("/f").respond_with_data("no", status=status)
    with _fetcher(FakeTime(), retries=0) as f, pytest.raises(FeedError, match=words):
        f.fetch(Feed(name="gone", url=httpserver.url_for("/f")))


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A server that accepts the request and then never answers (until the test ends)."""
    release = threading.Event()

    class Hang(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(10)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feed"
    release.set()
    server.shutdown()
    server.server_close()


def test_hanging_server_costs_the_read_timeout_and_other_feeds_land(
    hanging_server: str, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/ok").respond_with_data(HF, content_type="application/json")
    with _fetcher(FakeTime(), read_timeout=0.5, retries=3) as f:
        start = time.monotonic()
        with pytest.raises(FeedError, match=r"hang.*timed out waiting for data"):
            f.fetch(Feed(name="hang", url=hanging_server))
        elapsed = time.monotonic() - start
        ok = f.fetch(Feed(name="ok", url=httpserver.url_for("/ok")))
    assert 0.45 <= elapsed < 1.9  # one timeout, not one per retry (that would be 2 s)
    assert len(ok.papers) == 8


def test_redirect_is_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for("/dir/new")}
    )
    rel = (FEEDS / "feedparser-wellformed-base-http_item_link_base_docuri.xml").read_bytes()
    httpserver.expect_request("/dir/new").respond_with_data(rel, content_type="application/xml")
    with _fetcher(FakeTime()) as f:
        result = f.fetch(Feed(name="moved", url=httpserver.url_for("/old")))
    # the relative link is resolved against where the feed really came from
    assert [p.url for p in result.papers] == [httpserver.url_for("/relative/uri")]


def test_oversized_body_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(ARXIV_RSS, content_type="application/xml")

    def chunked(_: Request) -> Response:  # no Content-Length: the limit must hold while reading
        return Response(ARXIV_RSS[i : i + 4096] for i in range(0, len(ARXIV_RSS), 4096))

    httpserver.expect_request("/stream").respond_with_handler(chunked)
    with _fetcher(FakeTime(), max_bytes=50_000) as f:
        with pytest.raises(FeedError, match=r"big.*136150 bytes, more than http.max_bytes"):
            f.fetch(Feed(name="big", url=httpserver.url_for("/big")))
        with pytest.raises(FeedError, match=r"stream.*over http.max_bytes \(50000 bytes\)"):
            f.fetch(Feed(name="stream", url=httpserver.url_for("/stream")))


def test_a_server_trickling_bytes_is_cut_off_at_the_deadline(httpserver: HTTPServer) -> None:
    def trickle(_: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for i in range(0, len(ARXIV_RSS), 512):
                yield ARXIV_RSS[i : i + 512]
                time.sleep(0.05)  # the server's pace: 10 KB/s, under any read timeout

        return Response(chunks())

    httpserver.expect_request("/slow").respond_with_handler(trickle)
    slow = Feed(name="slow", url=httpserver.url_for("/slow"))
    start = time.monotonic()
    with (
        _fetcher(FakeTime(), connect_timeout=0.2, read_timeout=0.4) as f,
        pytest.raises(FeedError, match=r"'slow'.*(still sending after|longer than) 0.6 s"),
    ):
        f.fetch(slow)
    assert time.monotonic() - start < 2.0  # the whole body would take 13 s


def test_gzip_encoded_and_gzip_file_bodies(httpserver: HTTPServer) -> None:
    packed = gzip.compress(ARXIV_RSS)
    httpserver.expect_request(
        "/enc", headers={"Accept-Encoding": "gzip, deflate"}
    ).respond_with_data(
        packed, headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"
    )
    httpserver.expect_request("/file.xml.gz").respond_with_data(
        packed, content_type="application/gzip"
    )
    with _fetcher(FakeTime(), max_bytes=200_000) as f:
        assert len(f.fetch(Feed(name="enc", url=httpserver.url_for("/enc"))).papers) == 68
        assert len(f.fetch(Feed(name="gz", url=httpserver.url_for("/file.xml.gz"))).papers) == 68
    # a small compressed body that unpacks past the limit is refused too
    with _fetcher(FakeTime(), max_bytes=50_000) as f, pytest.raises(FeedError, match="max_bytes"):
        f.fetch(Feed(name="enc", url=httpserver.url_for("/enc")))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            b"<!DOCTYPE html><html><head><title>Log in</title></head><body>x</body></html>",
            "got an HTML page, not a feed",
        ),
        (bytes(range(256)) * 4, "binary data"),
        (b"", "empty"),
        (b"just some text, not xml", "not an RSS, Atom or JSON feed"),
        (b'{"papers": []}', "neither Hugging Face daily papers nor a JSON Feed"),
    ],
)
def test_unusable_bodies_are_clear_feed_errors(
    httpserver: HTTPServer, body: bytes, words: str
) -> None:
    httpserver.expect_request("/f").respond_with_data(body, content_type="text/html")
    with _fetcher(FakeTime()) as f, pytest.raises(FeedError, match=f"'junk'.*{words}"):
        f.fetch(Feed(name="junk", url=httpserver.url_for("/f")))


def test_connection_refused_is_a_feed_error() -> None:
    with _fetcher(FakeTime()) as f, pytest.raises(FeedError, match=r"'down'.*ConnectError"):
        f.fetch(Feed(name="down", url="http://127.0.0.1:9/feed"))


def test_requests_to_arxiv_are_spaced(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/query").respond_with_data(
        API, content_type="application/atom+xml"
    )
    httpserver.expect_request("/hf").respond_with_data(HF, content_type="application/json")
    t = FakeTime()
    with _fetcher(t, transport=Loopback(httpserver.port), arxiv_delay=3.0) as f:
        f.fetch(Feed(name="a1", url="http://export.arxiv.org/api/query?search_query=all:x"))
        f.fetch(Feed(name="hf", url="http://example.org/hf"))  # not arXiv: no wait
        t.now += 1.0  # a second passes elsewhere
        f.fetch(Feed(name="a2", url="https://arxiv.org/api/query?id_list=1"))
        f.fetch(Feed(name="a3", url="http://rss.arxiv.org/api/query"))
    assert t.sleeps == [2.0, 3.0]
    assert {r.headers["Host"] for r, _ in httpserver.log} >= {"export.arxiv.org", "rss.arxiv.org"}


def test_hf_daily_papers_options_become_the_query(httpserver: HTTPServer) -> None:
    page0 = HF
    httpserver.expect_ordered_request(
        "/api/daily_papers",
        query_string={"date": "2024-05-29", "sort": "trending", "limit": "8", "p": "0"},
    ).respond_with_data(page0, content_type="application/json")
    httpserver.expect_ordered_request(
        "/api/daily_papers",
        query_string={"date": "2024-05-29", "sort": "trending", "limit": "8", "p": "1"},
    ).respond_with_data(b"[]", content_type="application/json")
    feed = Feed(
        name="hf",
        url="https://huggingface.co/api/daily_papers",
        date="2024-05-29",
        sort="trending",
        limit=8,
        pages=3,
    )
    with _fetcher(FakeTime(), transport=Loopback(httpserver.port)) as f:
        result = f.fetch(feed)
    httpserver.check_assertions()
    assert len(result.papers) == 8  # the empty second page ends the paging: no third request
    assert len(httpserver.log) == 2


def test_hf_urls() -> None:
    one = Feed(name="hf", url="https://huggingface.co/api/daily_papers?limit=50", sort="trending")
    assert hf_urls(one) == ["https://huggingface.co/api/daily_papers?limit=50&sort=trending"]
    two = Feed(name="hf", url="https://huggingface.co/api/daily_papers", limit=20, pages=2)
    assert hf_urls(two) == [
        "https://huggingface.co/api/daily_papers?limit=20&p=0",
        "https://huggingface.co/api/daily_papers?limit=20&p=1",
    ]


def test_local_files_and_file_urls(tmp_path: Path) -> None:
    path = tmp_path / "hf.json"
    path.write_bytes(HF)
    with _fetcher(FakeTime()) as f:
        assert len(f.fetch(Feed(name="a", url=str(path))).papers) == 8
        assert len(f.fetch(Feed(name="b", url=path.as_uri())).papers) == 8
        with pytest.raises(FeedError, match=r"'c'.*cannot read .*missing.json"):
            f.fetch(Feed(name="c", url=str(tmp_path / "missing.json")))
        with pytest.raises(FeedError, match=r"'d'.*unsupported url scheme"):
            f.fetch(Feed(name="d", url="ftp://example.org/feed.xml"))
