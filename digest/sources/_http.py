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
from ._deadline import Deadline, bound
from ._decode import Decoder
from ._isolate import parse_within

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
        # One deadline per fetch of a url (connect_timeout + read_timeout): connecting,
        # the headers, the body and parsing it all end by then, however slow the server.
        self.deadline = Deadline()
        bound(self.client, self.deadline)

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
        self.deadline.start(self.http.connect_timeout + self.http.read_timeout)
        try:
            try:
                with path.open("rb") as fh:
                    data = fh.read(self.http.max_bytes + 1)
            except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise FeedError(
                    f"feed {feed.name!r}: cannot read {path}: {why}; "
                    "check the path in [[feeds]] url"
                ) from exc
            if len(data) > self.http.max_bytes:
                raise FeedError(
                    f"feed {feed.name!r}: {path} is larger than {self.http.max_bytes} bytes "
                    "(http.max_bytes); raise the limit if the file is right"
                )
            data = self._gunzip(feed, str(path), data)
            papers = self._parse(feed, data, path.as_uri())
        finally:
            self.deadline.clear()
        return FetchResult(papers=papers, url=str(path))

    def _parse(self, feed: Feed, data: bytes, base_url: str) -> list[Paper]:
        """The papers in ``data``, parsed by the time the fetch's deadline comes."""
        return parse_within(
            data,
            feed.name,
            base_url=base_url,
            skip_replacements=feed.skip_replacements,
            seconds=max(self.deadline.left() or 0.0, 0.0),
        )

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
            try:  # the fetch's deadline starts in _request, once arXiv's spacing is kept
                status, resp_headers, body, final_url = self._request(feed, url, headers)
                if status in RETRY_STATUSES and attempt < self.http.retries:
                    delay = self._retry_delay(resp_headers, attempt)
                else:
                    return self._result(
                        feed, url, (etag, modified), status, attempt, resp_headers, body, final_url
                    )
            finally:
                self.deadline.clear()
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

    def _result(
        self,
        feed: Feed,
        url: str,
        stored: tuple[str | None, str | None],
        status: int,
        attempt: int,
        resp_headers: httpx.Headers,
        body: bytes,
        final_url: str,
    ) -> FetchResult:
        """What one final response says: not modified, an error, or papers (parsed within
        the fetch's deadline)."""
        etag, modified = stored
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
        return FetchResult(
            papers=self._parse(feed, data, final_url),
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
        self.deadline.start(self.http.connect_timeout + self.http.read_timeout)
        limit = self.http.max_bytes
        where = f"feed {feed.name!r}: {url}"
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                if is_arxiv_host(str(resp.url)) and not arxiv:
                    arxiv = True  # redirected to arxiv.org: pace the next request too
                length = resp.headers.get("content-length", "")
                ok = 200 <= resp.status_code < 300
                if ok and length.isascii() and length.isdigit() and int(length[:20]) > limit:
                    raise FeedError(
                        f"{where}: the body is {int(length)} bytes, more than "
                        f"http.max_bytes ({limit}); raise the limit if the feed is right"
                    )
                chunks: list[bytes] = []
                if ok:
                    chunks = self._body(resp, where, limit)
                return resp.status_code, resp.headers, b"".join(chunks), str(resp.url)
        except httpx.TimeoutException as exc:
            if self.deadline.expired():
                raise FeedError(
                    f"{where}: the fetch took longer than {self.deadline.seconds:g} s in all "
                    "(http.connect_timeout + http.read_timeout); the server is too slow, "
                    "try again later"
                ) from exc
            kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            raise FeedError(
                f"{where}: timed out {kind} "
                f"(http.connect_timeout={self.http.connect_timeout:g} s, "
                f"http.read_timeout={self.http.read_timeout:g} s); "
                "the server may be down, try again later"
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise FeedError(f"{where}: too many redirects; check the url") from exc
        except httpx.DecodingError as exc:
            raise FeedError(
                f"{where}: the compressed body is corrupt ({exc}); try again later"
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FeedError(
                f"{where}: {type(exc).__name__}: {_one_line(exc)}; check the url and the network"
            ) from exc
        finally:
            if arxiv:
                self._last_arxiv = self.clock()

    def _body(self, resp: httpx.Response, where: str, limit: int) -> list[bytes]:
        """The body, its Content-Encoding undone as it streams in: the bytes on the wire and
        the bytes they unpack to are counted as they come, against ``limit``."""
        decoder = Decoder(resp.headers.get_list("content-encoding", split_commas=True), where)
        chunks: list[bytes] = []
        raw = size = 0
        packed = " once uncompressed" if decoder.layers else ""

        def over(what: str = "") -> FeedError:
            return FeedError(
                f"{where}: the body is over http.max_bytes ({limit} bytes){what}; "
                "raise the limit if the feed is right"
            )

        for chunk in resp.iter_raw():
            raw += len(chunk)
            if raw > limit:
                raise over()
            for piece in decoder.feed(chunk):
                size += len(piece)
                if size > limit:
                    raise over(packed)
                chunks.append(piece)
            if self.deadline.expired():
                raise FeedError(
                    f"{where}: too slow, still sending after {self.deadline.seconds:g} s; "
                    "try again later or raise http.read_timeout"
                )
        for piece in decoder.flush():
            size += len(piece)
            if size > limit:
                raise over(packed)
            chunks.append(piece)
        return chunks

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
