"""Fetching feeds politely: one httpx client, timeouts, retries, conditional GET, size cap."""

from __future__ import annotations

import gzip
import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from .. import __version__
from ..config import Feed, Http
from ..errors import FeedError
from ..models import Paper
from ._parse import parse

if TYPE_CHECKING:
    from ..store import FeedStateView

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
HF_DAILY_PATH = "/api/daily_papers"


@dataclass
class FetchResult:
    papers: list[Paper] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False  # a 304: nothing was parsed
    url: str = ""


def is_arxiv_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "arxiv.org" or host.endswith(".arxiv.org")


def is_hf_daily(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    hf_host = host in ("huggingface.co", "www.huggingface.co")
    return hf_host and parts.path.rstrip("/") == HF_DAILY_PATH


def hf_urls(feed: Feed) -> list[str]:
    """The request urls for a Hugging Face daily papers feed, one per page.

    The API takes ``date`` (YYYY-MM-DD), ``sort`` (``trending`` or ``publishedAt``),
    ``limit`` (page size) and ``p`` (page, from 0). Values already in the url win.
    """
    parts = urlsplit(feed.url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if feed.date and "date" not in query:
        query["date"] = feed.date
    if feed.sort and "sort" not in query:
        query["sort"] = feed.sort
    if feed.limit and "limit" not in query:
        query["limit"] = str(feed.limit)
    first = int(query.pop("p", "0") or 0) if str(query.get("p", "0")).isdigit() else 0
    urls = []
    for page in range(first, first + feed.pages):
        q = dict(query)
        if feed.pages > 1 or page:
            q["p"] = str(page)
        urls.append(urlunsplit(parts._replace(query=urlencode(q))))
    return urls


class Fetcher:
    """Fetches feeds over one HTTP client for the whole run; use as a context manager.

    ``sleep`` and ``clock`` are injected so tests never wait: they pace requests to
    arxiv.org (at least ``http.arxiv_delay`` seconds apart) and back off between retries.
    """

    def __init__(
        self,
        http: Http,
        contact: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = http
        self.sleep = sleep
        self.clock = clock
        self.user_agent = (
            f"digest/{__version__} (+mailto:{contact})" if contact else (f"digest/{__version__}")
        )
        self._last_arxiv: float | None = None
        self.client = httpx.Client(
            timeout=httpx.Timeout(
                connect=http.connect_timeout,
                read=http.read_timeout,
                write=http.read_timeout,
                pool=http.connect_timeout,
            ),
            follow_redirects=True,
            max_redirects=5,
            headers={
                "User-Agent": self.user_agent,
                "Accept-Encoding": "gzip, deflate",
                "Accept": "application/atom+xml, application/rss+xml, application/feed+json, "
                "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
            },
            transport=transport,
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    # -------------------------------------------------------------------------------
    def fetch(self, feed: Feed, state: FeedStateView | None = None) -> FetchResult:
        """Fetch and parse one feed; any failure is a one-line ``FeedError`` naming it."""
        url = feed.url.strip()
        if url.lower().startswith("file:"):
            return self._read_file(feed, Path(unquote(urlsplit(url).path)))
        if not url.lower().startswith(("http://", "https://")):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", url):
                raise FeedError(
                    f"feed {feed.name!r}: {url}: unsupported url scheme; use an http(s) url "
                    "or a local file path"
                )
            return self._read_file(feed, Path(url).expanduser())
        urls = hf_urls(feed) if is_hf_daily(url) else [url]
        # a stored ETag is only valid for the url it came from
        conditional = state is not None and len(urls) == 1 and state.url in (None, "", url, urls[0])
        papers: list[Paper] = []
        first: FetchResult | None = None
        for page_url in urls:
            result = self._fetch_url(feed, page_url, state if conditional else None)
            if first is None:
                first = result
                if result.not_modified:
                    return result
            papers.extend(result.papers)
            if len(urls) > 1 and (
                not result.papers or (feed.limit and len(result.papers) < feed.limit)
            ):
                break  # the last page
        assert first is not None
        return FetchResult(
            papers=_dedupe(papers),
            etag=first.etag,
            last_modified=first.last_modified,
            url=urls[0],
        )

    def _read_file(self, feed: Feed, path: Path) -> FetchResult:
        try:
            with path.open("rb") as fh:
                data = fh.read(self.http.max_bytes + 1)
        except OSError as exc:
            raise FeedError(
                f"feed {feed.name!r}: cannot read {path}: {exc.strerror or exc}; "
                "check the path in [[feeds]] url"
            ) from exc
        if len(data) > self.http.max_bytes:
            raise FeedError(
                f"feed {feed.name!r}: {path} is larger than {self.http.max_bytes} bytes "
                "(http.max_bytes); raise the limit if the file is right"
            )
        data = self._gunzip(feed, str(path), data)
        papers = parse(
            data, feed.name, base_url=path.as_uri(), skip_replacements=feed.skip_replacements
        )
        return FetchResult(papers=papers, url=str(path))

    def _fetch_url(self, feed: Feed, url: str, state: FeedStateView | None) -> FetchResult:
        # (a value stored before it was checked is checked again: it may not be sendable)
        etag = sendable(state.etag) if state is not None else None
        modified = sendable(state.last_modified) if state is not None else None
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        attempt = 0
        while True:
            status, resp_headers, body, final_url = self._request(feed, url, headers)
            if status in RETRY_STATUSES and attempt < self.http.retries:
                delay = self._retry_delay(resp_headers, attempt)
                log.info(
                    "feed %s: HTTP %d from %s; retry %d/%d in %.1f s",
                    feed.name,
                    status,
                    url,
                    attempt + 1,
                    self.http.retries,
                    delay,
                )
                self.sleep(delay)
                attempt += 1
                continue
            break
        if status == 304:
            return FetchResult(
                etag=sendable(resp_headers.get("etag")) or etag,
                last_modified=sendable(resp_headers.get("last-modified")) or modified,
                not_modified=True,
                url=url,
            )
        if not 200 <= status < 300:
            raise FeedError(f"feed {feed.name!r}: {url}: {_status_hint(status, attempt)}")
        data = self._gunzip(feed, url, body)
        papers = parse(
            data, feed.name, base_url=final_url, skip_replacements=feed.skip_replacements
        )
        return FetchResult(
            papers=papers,
            etag=sendable(resp_headers.get("etag")),
            last_modified=sendable(resp_headers.get("last-modified")),
            url=url,
        )

    def _request(
        self, feed: Feed, url: str, headers: dict[str, str]
    ) -> tuple[int, httpx.Headers, bytes, str]:
        arxiv = is_arxiv_host(url)
        if arxiv:
            self._pace_arxiv()
        start = self.clock()
        limit = self.http.max_bytes
        deadline = self.http.connect_timeout + self.http.read_timeout
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                if is_arxiv_host(str(resp.url)) and not arxiv:
                    arxiv = True  # redirected to arxiv.org: pace the next request too
                length = resp.headers.get("content-length", "")
                ok = 200 <= resp.status_code < 300
                if ok and length.isascii() and length.isdigit() and int(length[:20]) > limit:
                    raise FeedError(
                        f"feed {feed.name!r}: {url}: the body is {int(length)} bytes, more than "
                        f"http.max_bytes ({limit}); raise the limit if the feed is right"
                    )
                chunks: list[bytes] = []
                size = 0
                if ok:
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise FeedError(
                                f"feed {feed.name!r}: {url}: the body is over http.max_bytes "
                                f"({limit} bytes); raise the limit if the feed is right"
                            )
                        if self.clock() - start > deadline:
                            raise FeedError(
                                f"feed {feed.name!r}: {url}: too slow, still sending after "
                                f"{deadline:g} s; try again later or raise http.read_timeout"
                            )
                        chunks.append(chunk)
                return resp.status_code, resp.headers, b"".join(chunks), str(resp.url)
        except httpx.TimeoutException as exc:
            kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            raise FeedError(
                f"feed {feed.name!r}: {url}: timed out {kind} "
                f"(http.connect_timeout={self.http.connect_timeout:g} s, "
                f"http.read_timeout={self.http.read_timeout:g} s); "
                "the server may be down, try again later"
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise FeedError(
                f"feed {feed.name!r}: {url}: too many redirects; check the url"
            ) from exc
        except httpx.DecodingError as exc:
            raise FeedError(
                f"feed {feed.name!r}: {url}: the compressed body is corrupt ({exc}); "
                "try again later"
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FeedError(
                f"feed {feed.name!r}: {url}: {type(exc).__name__}: {_one_line(exc)}; "
                "check the url and the network"
            ) from exc
        finally:
            if arxiv:
                self._last_arxiv = self.clock()

    def _pace_arxiv(self) -> None:
        if self._last_arxiv is None:
            return
        wait = self.http.arxiv_delay - (self.clock() - self._last_arxiv)
        if wait > 0:
            log.debug("waiting %.1f s between requests to arxiv.org", wait)
            self.sleep(wait)

    def _retry_delay(self, headers: httpx.Headers, attempt: int) -> float:
        backoff = self.http.backoff * (2**attempt)
        value = (headers.get("retry-after") or "").strip()
        delay: float | None = None
        if value.isascii() and value.isdigit():
            delay = float(value)
        elif value:
            try:
                when = parsedate_to_datetime(value)
                sent = parsedate_to_datetime(headers.get("date", ""))
                delay = max(0.0, (when - sent).total_seconds())
            except (TypeError, ValueError, IndexError, OverflowError):
                delay = None
        if delay is None:
            delay = backoff
        return min(delay, self.http.max_retry_after)

    def _gunzip(self, feed: Feed, where: str, data: bytes) -> bytes:
        """A body that is itself a .gz file (not Content-Encoding) is unpacked, within limits."""
        if not data.startswith(b"\x1f\x8b"):
            return data
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(data, self.http.max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise FeedError(f"feed {feed.name!r}: {where}: corrupt gzip data ({exc})") from exc
        if len(out) > self.http.max_bytes:
            raise FeedError(
                f"feed {feed.name!r}: {where}: unpacks to more than http.max_bytes "
                f"({self.http.max_bytes} bytes); raise the limit if the feed is right"
            )
        return out


_SENDABLE = re.compile(r"[\x20-\x7e]{1,1024}")


def sendable(value: str | None) -> str | None:
    """An ETag or Last-Modified we can send back as If-None-Match / If-Modified-Since:
    printable ASCII, at most 1,024 characters. Anything else (a non-ASCII byte, a control
    character) is not kept, so it can never break the next request."""
    if value and _SENDABLE.fullmatch(value):
        return value
    return None


def _status_hint(status: int, retries: int) -> str:
    reason = httpx.codes.get_reason_phrase(status) or "unexpected status"
    tried = f" after {retries} retries" if retries else ""
    if status == 404 or status == 410:
        return f"HTTP {status} {reason}; check the feed url"
    if status in (401, 403):
        return f"HTTP {status} {reason}; the server refuses us, check the url or contact the site"
    if status == 429:
        return f"HTTP 429 {reason}{tried}; the server is rate limiting us, try again later"
    if status >= 500:
        return f"HTTP {status} {reason}{tried}; the server is failing, try again later"
    return f"HTTP {status} {reason}; check the feed url"


def _dedupe(papers: list[Paper]) -> list[Paper]:
    seen: set[str] = set()
    out = []
    for p in papers:
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]
