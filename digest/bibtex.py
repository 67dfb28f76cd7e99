"""A small reader for BibTeX exports (Zotero, Mendeley, Google Scholar): titles and abstracts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .errors import DigestError


class BibtexError(DigestError):
    pass


_ENTRY = re.compile(r"@(\w+)\s*[{(]", re.I)
_FIELD = re.compile(r"\s*([A-Za-z][\w:-]*)\s*=\s*", re.A)


def _value(text: str, i: int) -> tuple[str, int]:
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
            m = re.match(r"[\w.:-]+", text[i:])
            if not m:
                break
            parts.append(m.group(0))
            i += m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "#":
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
            continue
        break
    return "".join(parts), i


def _clean(value: str) -> str:
    value = re.sub(r"\\[a-zA-Z]+\s*", "", value.replace("\\&", "&"))
    return " ".join(value.replace("{", "").replace("}", "").split())


def entries(text: str) -> Iterator[dict[str, str]]:
    for m in _ENTRY.finditer(text):
        kind = m.group(1).lower()
        if kind in ("comment", "preamble", "string"):
            continue
        i = m.end()
        comma = text.find(",", i)
        if comma < 0:
            return
        fields: dict[str, str] = {}
        i = comma + 1
        while i < len(text):
            fm = _FIELD.match(text, i)
            if not fm:
                break
            value, i = _value(text, fm.end())
            fields[fm.group(1).lower()] = _clean(value)
            while i < len(text) and (text[i].isspace() or text[i] == ","):
                i += 1
            if i < len(text) and text[i] in "})":
                break
        yield fields


def read_bibtex(path: Path) -> list[tuple[str, str]]:
    """(title, abstract) for every entry with a title."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except IsADirectoryError as exc:
        raise BibtexError(f"{path} is a folder, not a BibTeX file") from exc
    out = [(e["title"], e.get("abstract", "")) for e in entries(text) if e.get("title")]
    if not out and text.strip():
        raise BibtexError(f"{path}: no BibTeX entries with a title found; export as BibTeX")
    return out
