"""Text helpers for rendering: cleaning (LaTeX via digest.latex), safe links, trimming, wrapping.

Everything here is pure and cheap; nothing reads the clock or the network.
"""

from __future__ import annotations

import re
import textwrap
from functools import lru_cache
from urllib.parse import quote, urlsplit

from ..latex import latex_to_text

# ---------------------------------------------------------------- cleaning

# Control characters, and the bidi overrides that can disguise text, become spaces.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")


def one_line(text: str | None) -> str:
    """Collapse all whitespace (CR/LF included) to single spaces and drop control characters."""
    if not text:
        return ""
    if text.isprintable() and "  " not in text and text[0] != " " and text[-1] != " ":
        return text  # the common case, checked in C
    return _SPACES.sub(" ", _CONTROL.sub(" ", text).replace("\xa0", " ")).strip()


@lru_cache(maxsize=65_536)
def clean_text(text: str | None) -> str:
    """One line of readable text: whitespace collapsed, simple LaTeX turned into Unicode."""
    return one_line(latex_to_text(one_line(text)))


# ---------------------------------------------------------------- links

# Characters libxml2's HTML serializer leaves alone in href attributes; anything else we
# percent-encode first, so the link is the same whichever way the HTML is produced.
_UNSAFE_IN_URL = re.compile(r'[\s\x00-\x1f\x7f-\x9f"<>\\\u2028\u2029\u202a-\u202e\u2066-\u2069]')
_URL_SAFE = "-_.!~*'()@/:=?;#%&,+$[]"
_URL_OK = re.compile(r"[A-Za-z0-9\-_.!~*'()@/:=?;#%&,+$\[\]]*")
_HOST = re.compile(r"(?!@)[^/?#]*")  # the network location, when it does not start with "@"


def safe_url(url: str | None, *, allow_mailto: bool = False) -> str:
    """The URL if it is an absolute http(s) link (or mailto: when allowed), else ``""``.

    Control characters and whitespace inside make it unsafe; non-ASCII is percent-encoded.
    """
    if not url:
        return ""
    if url.startswith(("https://", "http://")) and _URL_OK.fullmatch(url):
        host = _HOST.match(url, url.index("//") + 2)
        netloc = host.group() if host is not None else ""
        if netloc and "[" not in netloc and "]" not in netloc:
            return url  # the common link: nothing to check further, nothing to encode
    url = url.strip()
    if not url or _UNSAFE_IN_URL.search(url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc or parts.netloc.startswith("@"):
            return ""
    elif not (allow_mailto and scheme == "mailto" and "@" in parts.path):
        return ""
    return url if _URL_OK.fullmatch(url) else quote(url, safe=_URL_SAFE)


# ---------------------------------------------------------------- trimming


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—(") + "…"


def short_authors(authors: tuple[str, ...] | list[str], shown: int = 3) -> str:
    """``"A, B, C … +5"``: the first ``shown`` names and how many more."""
    names = [n for n in (one_line(a) for a in authors) if n]
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} … +{len(names) - shown}"


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


# ---------------------------------------------------------------- wrapping

WIDTH = 78
_BULLET = re.compile(r"^(\s*)([*\-•]|\d+\.)\s")


def wrap_line(line: str, width: int = WIDTH) -> str:
    """One line wrapped at ``width`` columns; indentation (and a bullet's hang) is kept.

    Words longer than the width (links) are never broken.
    """
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    m = _BULLET.match(line)
    hang = " " * (m.end() if m else indent)
    lines = textwrap.wrap(
        line,
        width=width,
        subsequent_indent=hang,
        break_long_words=False,
        break_on_hyphens=False,
        drop_whitespace=True,
    )
    if len(lines) > 1 and len(lines[0]) <= len(hang):  # a bullet alone: keep its first word
        lines[:2] = [lines[0].rstrip() + " " + lines[1].lstrip()]
    return "\n".join(lines) if lines else line.rstrip()


class Wrapper:
    """Finishes a plain-text part: each line wrapped, blank-line runs squeezed, one final newline.

    Only :meth:`line` looks at a single line, so any text can be finished piece by piece
    (lines wholly inside a piece ahead of time) and come out the same. The long lines of a
    digest (abstracts) repeat across subscribers, so wrapped lines are remembered.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._memo: dict[str, str] = {}

    def line(self, line: str) -> str:
        """One line without trailing spaces, wrapped at 78 columns when longer."""
        line = line.rstrip()
        if len(line) <= WIDTH:
            return line
        done = self._memo.get(line)
        if done is None:
            if len(self._memo) >= self.limit:
                self._memo.clear()
            done = self._memo[line] = wrap_line(line, WIDTH)
        return done

    def lines(self, text: str) -> str:
        """:meth:`line` applied to every line of ``text``."""
        return "\n".join([self.line(x) for x in text.split("\n")])

    def __call__(self, text: str) -> str:
        return squeeze(self.lines(text))


def squeeze(text: str) -> str:
    """Runs of blank lines squeezed to one; no blank lines at either end; a final newline."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip("\n") + "\n"
