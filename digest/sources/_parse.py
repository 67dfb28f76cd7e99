"""Feed bytes -> ``Paper`` values. The format is detected from the content, not the URL."""

from __future__ import annotations

import re

from ..errors import FeedError
from ..models import Paper
from ._common import noting
from ._jsonfmt import parse_json
from ._xmlfmt import REPLACEMENT_TYPES, parse_xml

__all__ = ["REPLACEMENT_TYPES", "parse"]

_HTML_START = re.compile(
    rb"^(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_FEED_TAG = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)[\s>]", re.IGNORECASE)
_TEXTUAL = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e\x80-\xff]*$")


def parse(
    data: bytes, source: str, *, base_url: str = "", skip_replacements: bool = False
) -> list[Paper]:
    """Parse one feed's bytes into papers; ``source`` is the feed name kept in ``Paper.sources``.

    Hugging Face daily papers JSON, JSON Feed, and RSS/Atom (arXiv announcement feeds,
    arXiv API responses, any other feed) are recognised from the content. An empty feed
    gives ``[]``; unusable input raises a one-line ``FeedError`` naming the source.
    ``skip_replacements`` drops arXiv's "replace" and "replace-cross" announcements.
    """
    with noting(source):
        return _parse(data, source, base_url=base_url, skip_replacements=skip_replacements)


def _parse(data: bytes, source: str, *, base_url: str, skip_replacements: bool) -> list[Paper]:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise FeedError(f"feed {source!r}: the response is empty; check the feed url")
    if head[:1] in (b"{", b"["):
        return parse_json(data, source)
    if _HTML_START.match(head) and not _FEED_TAG.search(head):
        raise FeedError(
            f"feed {source!r}: got an HTML page, not a feed; point the url at the "
            "RSS/Atom/JSON feed itself"
        )
    if head[:1] != b"<" and not _TEXTUAL.match(head[:512]):
        raise FeedError(f"feed {source!r}: got binary data, not a feed; check the feed url")
    return parse_xml(data, source, base_url=base_url, skip_replacements=skip_replacements)
