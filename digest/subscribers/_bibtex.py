"""A small reader for BibTeX exports (Zotero, Mendeley, Google Scholar): titles and abstracts."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from ..errors import DigestError

log = logging.getLogger(__name__)

MAX_BYTES = 20_000_000  # of a liked_file read: a library of some 20,000 papers with abstracts


class BibtexError(DigestError):
    pass


_ENTRY = re.compile(r"@(\w+)\s*[{(]", re.I)
_FIELD = re.compile(r"\s*([A-Za-z][\w:-]*)\s*=\s*", re.A)
_BARE = re.compile(r"[\w.:-]+")
_KEY_END = re.compile(r"[,})\n]")


def _value(text: str, i: int, macros: dict[str, str] | None = None) -> tuple[str, int]:
    """Parse one field value starting at ``i``; returns (value, index after it)."""
    parts: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "{":
            depth, j = 1, i + 1
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            parts.append(text[i + 1 : j - 1])
            i = j
        elif c == '"':
            j = i + 1
            depth = 0
            while j < len(text) and not (text[j] == '"' and depth == 0):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            parts.append(text[i + 1 : j])
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                break
            word = m.group(0)
            parts.append((macros or {}).get(word.lower(), word))
            i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "#":
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
            continue
        break
    return "".join(parts), i


# LaTeX accent commands and the combining marks they stand for.
_ACCENTS = {
    '"': "\u0308",
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "v": "\u030c",
    "H": "\u030b",
    "r": "\u030a",
    "c": "\u0327",
    "k": "\u0328",
}
_LETTERS = {
    "ss": "ß",
    "o": "ø",
    "O": "Ø",
    "aa": "å",
    "AA": "Å",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "l": "ł",
    "L": "Ł",
    "i": "ı",
    "j": "ȷ",
}
_ACCENT = re.compile(
    r"\\([\"'`^~=.]|[uvHrck](?![a-zA-Z]))\s*\{?\s*(\\[ij](?![a-zA-Z])|[a-zA-Z])\}?"
)
_LETTER = re.compile(r"\\(ss|aa|AA|ae|AE|oe|OE|[oOlLij])(?![a-zA-Z])\s*")
_ESCAPED = re.compile(r"\\([&%$#_{}])")


def _accent(m: re.Match[str]) -> str:
    base = m.group(2)
    base = {"\\i": "i", "\\j": "j"}.get(base, base)
    return base + _ACCENTS[m.group(1)]


def _clean(value: str) -> str:
    """LaTeX markup to plain text: accents to letters, braces and commands dropped."""
    value = _ACCENT.sub(_accent, value)
    value = _LETTER.sub(lambda m: _LETTERS[m.group(1)], value)
    value = _ESCAPED.sub(lambda m: "\x00" + m.group(1), value)
    value = re.sub(r"\\[a-zA-Z]+\*?\s*", "", value)
    value = value.replace("{", "").replace("}", "").replace("\x00", "")
    value = value.replace("---", "\u2014").replace("--", "\u2013").replace("~", " ")
    return " ".join(unicodedata.normalize("NFC", value).split())


def _skip_block(text: str, i: int) -> int:
    """Index after the brace or parenthesis block that starts just before ``i``."""
    depth = 1
    while i < len(text) and depth:
        if text[i] in "{(":
            depth += 1
        elif text[i] in "})":
            depth -= 1
        i += 1
    return i


def _fields(text: str, i: int, macros: dict[str, str]) -> tuple[dict[str, str], int]:
    """``name = value`` pairs from ``i`` up to the entry's closing brace."""
    fields: dict[str, str] = {}
    while i < len(text):
        fm = _FIELD.match(text, i)
        if not fm:
            break
        value, i = _value(text, fm.end(), macros)
        fields[fm.group(1).lower()] = value
        while i < len(text) and (text[i].isspace() or text[i] == ","):
            i += 1
        if i < len(text) and text[i] in "})":
            return fields, i + 1
    return fields, i


def entries(text: str) -> Iterator[dict[str, str]]:
    """The fields of each entry, in file order, LaTeX markup turned into plain text.

    ``@string`` abbreviations are expanded; ``@comment`` and ``@preamble`` are skipped.
    """
    macros: dict[str, str] = {}
    pos = 0
    while True:
        m = _ENTRY.search(text, pos)
        if not m:
            return
        kind = m.group(1).lower()
        i = m.end()
        if kind in ("comment", "preamble"):
            pos = _skip_block(text, i)
            continue
        if kind == "string":
            found, pos = _fields(text, i, macros)
            macros.update({k.lower(): v for k, v in found.items()})
            continue
        key_end = _KEY_END.search(text, i)
        if key_end is None:
            return
        if text[key_end.start()] != ",":  # an entry with a key and no fields
            pos = key_end.end()
            continue
        fields, pos = _fields(text, key_end.end(), macros)
        yield {k: _clean(v) for k, v in fields.items()}


def read_bibtex(path: Path) -> list[tuple[str, str]]:
    """(title, abstract) for every entry with a title."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except IsADirectoryError as exc:
        raise BibtexError(f"{path} is a folder, not a BibTeX file") from exc
    if len(raw) > MAX_BYTES:
        log.warning("%s: only the first %d MB are read", path, MAX_BYTES // 1_000_000)
        raw = raw[:MAX_BYTES]
    text = raw.decode("utf-8", errors="replace")
    out = [(e["title"], e.get("abstract", "")) for e in entries(text) if e.get("title")]
    if not out and text.strip():
        raise BibtexError(f"{path}: no BibTeX entries with a title found; export as BibTeX")
    return out
