"""Normalization helpers: arXiv ids, whitespace, HTML to safe text, simple LaTeX, dates."""

from __future__ import annotations

import hashlib
import html
import re
import time
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from ..latex import latex_to_text

# --- arXiv ids -------------------------------------------------------------------------

_NEW_ID = r"\d{2}(?:0[1-9]|1[0-2])\.\d{4,5}"
_OLD_ID = r"[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[A-Za-z]+)?)?/\d{2}(?:0[1-9]|1[0-2])\d{3}"
_VERSION = r"(?:v\d+)?"

# "arXiv:2406.01234v2", "oai:arXiv.org:hep-th/9901001v1", "arxiv.org/abs/2406.01234"
_ARXIV_CONTEXT = re.compile(
    rf"(?:arxiv\.org/(?:abs|pdf|html|format)/|arxiv(?:\.org)?:\s*)({_NEW_ID}|{_OLD_ID}){_VERSION}",
    re.IGNORECASE,
)
# Pages of aggregators that are named by arXiv id: huggingface.co/papers/<id>, ...
_AGGREGATOR_HOSTS = (
    "huggingface.co",
    "hf.co",
    "alphaxiv.org",
    "www.alphaxiv.org",
    "tldr.takara.ai",
    "papers.takara.ai",
    "paperswithcode.com",
    "arxiv-sanity-lite.com",
    "scholar-inbox.com",
    "www.semanticscholar.org",
)
_LAST_SEGMENT = re.compile(rf"^({_NEW_ID}){_VERSION}(?:\.pdf)?$")
_BARE_ID = re.compile(rf"^(?:({_NEW_ID})|({_OLD_ID})){_VERSION}$")


def arxiv_id(*candidates: str | None) -> str | None:
    """The arXiv id (without version) found in any of the candidates, or None.

    Candidates are links, guids or ids: ``https://arxiv.org/abs/2406.01234v2``,
    ``oai:arXiv.org:2411.17702v1``, ``arXiv:hep-th/9901001``, ``2406.01234``,
    ``https://huggingface.co/papers/2406.01234``.
    """
    for raw in candidates:
        if not raw:
            continue
        text = raw.strip()
        m = _ARXIV_CONTEXT.search(text)
        if m:
            return _canonical(m.group(1))
        m = _BARE_ID.match(text)
        if m:
            return _canonical(m.group(0))
        found = _from_aggregator(text)
        if found:
            return found
    return None


def _from_aggregator(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    segments = [s for s in unquote(parts.path).split("/") if s]
    if not segments:
        return None
    host = (parts.hostname or "").lower()
    m = _LAST_SEGMENT.match(segments[-1])
    if m and (host in _AGGREGATOR_HOSTS or host.endswith(".arxiv.org")):
        return m.group(1)
    return None


def _canonical(found: str) -> str:
    found = re.sub(r"v\d+$", "", found)
    if "/" in found:
        archive, number = found.split("/", 1)
        archive = archive.split(".")[0].lower()  # math.GT/0309136 -> math/0309136
        return f"{archive}/{number}"
    return found


def url_id(link: str) -> str:
    """Canonical id for a paper with no arXiv id: ``url:`` + 16 hex digits of sha1(link)."""
    return "url:" + hashlib.sha1(link.strip().encode("utf-8")).hexdigest()[:16]


def arxiv_links(pid: str) -> tuple[str, str]:
    """(abstract page, PDF) for an arXiv id."""
    return f"https://arxiv.org/abs/{pid}", f"https://arxiv.org/pdf/{pid}"


def hf_link(pid: str) -> str:
    return f"https://huggingface.co/papers/{pid}"


_GITHUB = re.compile(
    r"(?<![\w./-])(?:https?://)?(?:www\.)?github\.com/[\w.-]+/[\w.-]+", re.IGNORECASE
)


def github_url(*texts: str | None) -> str | None:
    """The first GitHub repository link in the texts, as ``https://github.com/owner/repo``."""
    for text in texts:
        if not text:
            continue
        m = _GITHUB.search(text)
        if m:
            url = m.group(0).rstrip(".")
            url = url[:-4] if url.lower().endswith(".git") else url
            return "https://" + url.split("://", 1)[-1].removeprefix("www.")
    return None


# --- text ------------------------------------------------------------------------------


def collapse(text: str | None) -> str:
    """Whitespace and line wraps collapsed to single spaces, control characters dropped."""
    if not text:
        return ""
    text = "".join(
        ch if ch.isprintable() or ch.isspace() else " " for ch in text.replace("\x00", "")
    )
    return " ".join(text.split())


_SKIP = frozenset({"script", "style", "head", "title", "noscript", "iframe", "object", "svg"})
_BREAK = frozenset(
    {
        "p",
        "br",
        "div",
        "li",
        "ul",
        "ol",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "hr",
        "section",
        "article",
        "table",
    }
)
# One piece of markup: a comment's start, a tag (quoted attribute values may hold "<" and
# ">"), a declaration (<!DOCTYPE ...>, <![CDATA[...]]>) or a processing instruction. Each
# alternative fails at the next "<" or ">" at the latest, so scanning is linear in the text.
_MARKUP = re.compile(
    r"<!--"
    r"|<(?P<close>/?)(?P<name>[A-Za-z][A-Za-z0-9:_-]*)(?:[^<>\"']|\"[^\"]*\"|'[^']*')*>"
    r"|<![^<>]*>"
    r"|<\?[^<>]*>"
)
_LOOKS_HTML = re.compile(
    r"<(?:/?[a-zA-Z][a-zA-Z0-9]*[\s/>]|!--)|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"
)


def html_text(value: str | None) -> str:
    """Markup and scripts removed, entities decoded, whitespace collapsed: plain safe text.

    One pass over the text, in time linear in its length whatever it holds (Python's
    HTMLParser takes minutes on 200 KB of "<!--" or "<a ", so it is not used). An unclosed
    comment or script hides the rest of the text, as in a browser."""
    if not value:
        return ""
    if not _LOOKS_HTML.search(value):
        return collapse(value)
    parts: list[str] = []
    lower: str | None = None
    pos = 0
    while True:
        m = _MARKUP.search(value, pos)
        if m is None:
            parts.append(value[pos:])
            break
        parts.append(value[pos : m.start()])
        pos = m.end()
        if m.group(0) == "<!--":
            end = value.find("-->", pos)
            if end < 0:
                break
            pos = end + 3
            continue
        name = (m.group("name") or "").lower()
        if name in _SKIP and not m.group("close") and not m.group(0).endswith("/>"):
            lower = lower if lower is not None else value.lower()
            end = lower.find("</" + name, pos)
            if end < 0:
                break
            gt = value.find(">", end)
            pos = gt + 1 if gt >= 0 else len(value)
            parts.append(" ")
        elif name in _BREAK:
            parts.append(" ")
    text = html.unescape("".join(parts))
    text = _ANY_TAG.sub(" ", text)  # a tag unescaped from a double-escaped entity
    return collapse(text)


# A tag: "<" to the next ">", not across another "<" (so a text full of "<" costs linear
# time instead of a scan to the end of the text from each one).
_ANY_TAG = re.compile(r"<[^<>]*>")

# Text longer than this is cut before it is cleaned: no field keeps more than a few thousand
# characters (see ``_common``), and cleaning a megabyte costs time and memory for nothing.
RAW_TEXT = 50_000


def clean(value: str | None, *, is_html: bool = True) -> str:
    """The normal form of any title or abstract: safe text, readable LaTeX, one-line."""
    if value and len(value) > RAW_TEXT:
        value = value[:RAW_TEXT]
    text = html_text(value) if is_html else collapse(value)
    return collapse(latex_to_text(text))


# --- dates -----------------------------------------------------------------------------

# Dates outside these bounds are a feed's mistake (or mischief), not a paper's date.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def sane_date(value: datetime | None) -> datetime | None:
    """``value`` when it lies between 1900 and 2100 (UTC), else None."""
    if value is None or not EARLIEST <= value < LATEST:
        return None
    return value


def utc_from_struct(value: time.struct_time | None) -> datetime | None:
    """feedparser's ``*_parsed`` values are UTC struct_times."""
    if not value:
        return None
    try:
        return sane_date(datetime(*value[:6], tzinfo=UTC))
    except (TypeError, ValueError, OverflowError):
        return None


def utc_from_iso(value: object) -> datetime | None:
    """An ISO 8601 string (``2024-10-15T00:49:53.656Z``) as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return sane_date(parsed.replace(tzinfo=UTC))
        # 9999-12-31T23:59:59-23:59 is past the last datetime in UTC: OverflowError
        return sane_date(parsed.astimezone(UTC))
    except (ValueError, OverflowError):
        return None


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")
