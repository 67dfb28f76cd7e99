"""The pieces the compiled fast path assembles digests from: compiled templates cut into
literals and holes (``Pattern``, ``TextPattern``, whose lines without values are wrapped
once), and two-tier caches (``Memo``) for the per-digest values.

The escapes are those libxml2's HTML serializer (behind premailer) uses, so a filled piece
is exactly what compiling the template with the value in would have written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast

from ._textfmt import WIDTH, Wrapper

Escape = Callable[[str], str]


def escape_text(value: str) -> str:
    """As libxml2's HTML serializer writes a text node."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    """As libxml2's HTML serializer writes a double-quoted attribute value."""
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def same_text(value: str) -> str:
    return value


_BULLET = re.compile(r"^(\s*)([*\-•]|\d+\.)\s")  # as in textfmt.wrap_line


def quick_line(wrapper: Wrapper, line: str) -> str:
    """``wrapper.line(line)``, quicker (and without filling its memo) for the common line
    of a digest's text part that holds per-subscriber values (reasons, an unsubscribe
    link): printable, words one space apart. Those wrap greedily, as textwrap does, a
    word longer than a line alone on its line; any other goes to ``wrapper.line``.
    ``TextPattern`` uses this only where both agree on samples."""
    line = line.rstrip()
    if len(line) <= WIDTH:
        return line
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    if not body.isprintable() or "  " in body:
        return wrapper.line(line)
    m = _BULLET.match(line)
    hang = " " * (m.end() if m else indent)
    words = body.split(" ")
    if indent + len(words[0]) > WIDTH:  # textwrap drops the indent before such a word
        return wrapper.line(line)
    lines: list[str] = []
    current = line[:indent] + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) <= WIDTH:
            current += " " + word
        else:
            lines.append(current)
            current = hang + word
    lines.append(current)
    if len(lines) > 1 and len(lines[0]) <= len(hang):
        lines[:2] = [lines[0].rstrip() + " " + lines[1].lstrip()]
    return "\n".join(lines)


_WRAP_SAMPLES = (
    "  Why: matches 'speech', 'audio', 'music' · by Yann LeCun (followed) · 212 upvotes",
    "* " + "word " * 30,
    "12. a list item that goes on " + "and on " * 12,
    "   " + "ab " * 40 + "x" * 70,
    "Unsubscribe: https://example.org/unsubscribe?e=ada@example.org&token=" + "t" * 30,
    "Hi Ada, " + "é" * 80,
)


def _quick_agrees(wrapper: Wrapper) -> bool:
    return all(quick_line(wrapper, x) == wrapper.line(x) for x in _WRAP_SAMPLES)


K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A cache in two tiers, so that the many values seen once (a subscriber's address and
    links) do not push out those digests share (reasons, names, dates): a value seen once
    waits in ``fresh``, cleared when full; seen again, it moves to ``shared``, cleared
    only if it outgrows ``shared_limit``. Look in ``get`` (shared), then ``again``."""

    __slots__ = ("fresh", "get", "limit", "shared", "shared_limit")

    def __init__(self, limit: int = 4_000, shared_limit: int = 20_000) -> None:
        self.limit = limit
        self.shared_limit = shared_limit
        self.shared: dict[K, V] = {}
        self.fresh: dict[K, V] = {}
        self.get = self.shared.get

    def again(self, key: K) -> V | None:
        value = self.fresh.pop(key, None)
        if value is not None:
            if len(self.shared) >= self.shared_limit:
                self.shared.clear()
            self.shared[key] = value
        return value

    def add(self, key: K, value: V) -> V:
        if len(self.fresh) >= self.limit:
            self.fresh.clear()
        self.fresh[key] = value
        return value


class Pattern:
    """Literal pieces with holes between them; ``fill`` joins them with the values."""

    __slots__ = ("holes", "lits", "one")

    def __init__(self, lits: list[str], holes: list[tuple[Any, Escape]]) -> None:
        self.lits = lits
        self.holes = holes
        self.one = holes[0] if len(holes) == 1 else None

    def fill(self, values: Mapping[Any, str]) -> str:
        lits = self.lits
        if self.one is not None:  # a card with its reasons line
            key, esc = self.one
            return lits[0] + esc(values[key]) + lits[1]
        out = [lits[0]]
        for i, (key, esc) in enumerate(self.holes, 1):
            out.append(esc(values[key]))
            out.append(lits[i])
        return "".join(out)

    def parts(self, values: Mapping[Any, str | list[str]], out: list[str]) -> None:
        """What ``fill`` would join, appended to ``out``; a value may be a list of parts
        (a card's), taken as is."""
        lits = self.lits
        out.append(lits[0])
        for i, (key, esc) in enumerate(self.holes, 1):
            value = values[key]
            if isinstance(value, list):
                out.extend(value)
            else:
                out.append(esc(value))
            out.append(lits[i])


# A card ready for its reasons: HTML before them, their escape, HTML after; text lines
# before, the reasons line's start ("  Why: "), text lines after.
CardForm = tuple[str, Escape, str, str, str, str]


class TextPattern:
    """A plain-text :class:`Pattern` finished ahead of time except the lines that hold values.

    Items are finished text (whole lines), lines with holes (finished when filled), and
    card slots (cards arrive as finished whole lines).
    """

    __slots__ = ("card", "items", "quick", "wrapper")

    def __init__(self, pattern: Pattern, wrapper: Wrapper, quick: bool | None = None) -> None:
        self.wrapper = wrapper
        # a card's parts ready for its reasons line (``_fast._card_form``), when usual
        self.card: CardForm | None = None
        self.quick = _quick_agrees(wrapper) if quick is None else quick
        items: list[Any] = []  # str: finished lines; tuple: a line with holes; int: card slot
        line: list[Any] = [""]

        def close() -> None:
            if all(isinstance(p, str) for p in line):
                text = "".join(line)
                done = (quick_line(wrapper, text) if self.quick else wrapper.line(text)) + "\n"
                if items and isinstance(items[-1], str):
                    items[-1] += done
                else:
                    items.append(done)
            else:  # (literal pieces, value keys) to interleave
                parts = [p for p in line if p != ""]
                items.append(
                    (
                        tuple(p for p in parts if isinstance(p, str)),
                        tuple(p[0] for p in parts if not isinstance(p, str)),
                        tuple(isinstance(p, str) for p in parts),
                    )
                )

        lits = pattern.lits
        for i, lit in enumerate(lits):
            first, *rest = lit.split("\n")
            line.append(first)
            for piece in rest:
                close()
                line = [piece]
            if i == len(lits) - 1:
                break
            key = pattern.holes[i][0]
            if isinstance(key, int):
                if any(line):
                    raise _Unsupported("a card in the text template does not start a line")
                items.append(key)
                line = [""]
            else:
                line.append((key,))
        if any(isinstance(p, tuple) or p for p in line):
            close()
        self.items = items

    def fill(self, values: Mapping[Any, str]) -> str:
        out: list[str] = []
        self.parts(values, out)
        return "".join(out)

    def parts(self, values: Mapping[Any, str | list[str]], out: list[str]) -> None:
        """What ``fill`` would join, appended to ``out`` (see ``Pattern.parts``)."""
        wrapper = self.wrapper
        quick = self.quick
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int):
                value = values[item]
                if isinstance(value, list):
                    out.extend(value)
                else:
                    out.append(value)
            else:
                lits, keys, order = item
                if len(keys) == 1 and order == (True, False):  # "  Why: " + reasons
                    text = lits[0] + cast(str, values[keys[0]])
                else:
                    li, ki = iter(lits), iter(keys)
                    text = "".join(
                        [next(li) if lit else cast(str, values[next(ki)]) for lit in order]
                    )
                done = quick_line(wrapper, text) if quick else wrapper.line(text)
                out.append(done + "\n")


class _Unsupported(Exception):
    """The templates do something the fast path cannot cut into pieces."""
