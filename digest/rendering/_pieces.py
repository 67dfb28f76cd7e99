"""The pieces the compiled fast path assembles digests from: compiled templates cut into
literals and holes (``Pattern``, ``TextPattern``), each piece with its quoted-printable and
UTF-8 size worked out once, finished text lines (``Lines``), and two-tier caches (``Memo``)
for the per-digest values.

The escapes are those libxml2's HTML serializer (behind premailer) uses, so a filled piece
is exactly what compiling the template with the value in would have written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from ..qp import qp_part
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


class _NoQp(Exception):
    """A part holds a carriage return: the MIME encoder normalizes the whole text."""


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


class Encoder:
    """Each per-digest part's quoted-printable (``qp_part``), remembered (``Memo``): the
    values digests share (reasons, names, dates) are encoded once."""

    __slots__ = ("memo", "values")

    def __init__(self) -> None:
        self.memo: Memo[str, bytes] = Memo()
        # (escape, value) -> (the part, its qp, its UTF-8 size)
        self.values: Memo[tuple[Escape, str], tuple[str, bytes, int]] = Memo()

    def value(self, esc: Escape, value: str) -> tuple[str, bytes, int]:
        """A value as a part: escaped, encoded, measured (after ``values.get`` missed)."""
        key = (esc, value)
        found = self.values.again(key)
        if found is None:
            part = esc(value)
            found = self.values.add(key, (part, self(part), utf8_len(part)))
        return found

    def once(self, part: str) -> bytes:
        """A part seen only once (not remembered)."""
        if not part:
            return b""
        if "\r" in part:
            raise _NoQp
        return qp_part(part)

    def __call__(self, part: str) -> bytes:
        memo = self.memo
        q = memo.get(part) or memo.again(part)
        if q is None:
            if not part:
                return b""
            if "\r" in part:
                raise _NoQp
            q = memo.add(part, qp_part(part))
        return q


# Per-subscriber values that differ for every subscriber.
OWN = frozenset({"email", "unsubscribe_url", "manage_url"})


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# A card ready to join: its parts, their quoted-printable, the parts' UTF-8 size.
Piece = tuple[Sequence[str], Sequence[bytes], int]


class Pattern:
    """Literal pieces with holes between them; ``fill`` joins them with the values.

    The literals' quoted-printable and UTF-8 size are worked out on first use (``emit``)."""

    __slots__ = ("holes", "lits", "one", "qlits", "size")

    def __init__(self, lits: list[str], holes: list[tuple[Any, Escape]]) -> None:
        self.lits = lits
        self.holes = holes
        self.one = holes[0] if len(holes) == 1 else None
        self.qlits: list[bytes] | None = None
        self.size = 0

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

    def _encode(self) -> list[bytes]:
        if any("\r" in lit for lit in self.lits):
            raise _NoQp
        self.size = sum(map(utf8_len, self.lits))
        self.qlits = [qp_part(lit) if lit else b"" for lit in self.lits]
        return self.qlits

    def emit(
        self, values: Mapping[Any, str | Piece], sp: list[str], bp: list[bytes], enc: Encoder
    ) -> int:
        """``parts`` into ``sp``, each part's quoted-printable into ``bp``; a value is a
        string or a card's ``Piece``. Returns the UTF-8 size of what was added."""
        lits = self.lits
        qlits = self.qlits or self._encode()
        size = self.size
        sp.append(lits[0])
        bp.append(qlits[0])
        known = enc.values.get
        for i, (key, esc) in enumerate(self.holes, 1):
            value = values[key]
            if isinstance(value, str):
                if key in OWN:  # the subscriber's own: no use remembering it
                    part = esc(value)
                    found = (part, enc.once(part), utf8_len(part))
                else:
                    found = known((esc, value)) or enc.value(esc, value)
                sp.append(found[0])
                bp.append(found[1])
                size += found[2]
            else:
                sp.extend(value[0])
                bp.extend(value[1])
                size += value[2]
            sp.append(lits[i])
            bp.append(qlits[i])
        return size

    def piece(self, value: str, enc: Encoder) -> Piece:
        """A card's ``Piece`` with ``value`` as its reasons line."""
        one = self.one
        if one is None or one[0] != "reasons":
            sp: list[str] = []
            bp: list[bytes] = []
            size = self.emit(dict.fromkeys((k for k, _ in self.holes), value), sp, bp, enc)
            return sp, bp, size
        lits = self.lits
        qlits = self.qlits or self._encode()
        part = one[1](value)
        return [lits[0], part, lits[1]], [qlits[0], enc(part), qlits[1]], self.size + utf8_len(part)


class TextPattern:
    """A plain-text :class:`Pattern` finished ahead of time except the lines that hold values.

    Items are finished text (whole lines), lines with holes (finished when filled), and
    card slots (cards arrive as finished whole lines).
    """

    __slots__ = ("card", "forms", "items", "q", "quick", "simple", "wrapper")

    def __init__(self, pattern: Pattern, wrapper: Wrapper, quick: bool | None = None) -> None:
        self.wrapper = wrapper
        self.q: list[bytes | None] | None = None  # the finished items' quoted-printable
        # per line with values, once encoded: its pieces (None for a value), where the values go
        self.forms: list[tuple[list[str | None], list[tuple[int, Any]]] | None] = []
        # A card's usual form, once encoded: (text, its qp, "  Why: ", text, its qp).
        self.simple: tuple[str, bytes, str, str, bytes] | None = None
        # A card's text and HTML ready to take a reasons line (see ``FastPath._card_form``)
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

    def _encode(self) -> list[bytes | None]:
        if any(isinstance(item, str) and "\r" in item for item in self.items):
            raise _NoQp
        self.q = q = [qp_part(item) if isinstance(item, str) else None for item in self.items]
        self.forms = [_form(item) if isinstance(item, tuple) else None for item in self.items]
        items = self.items
        if len(items) == 3 and isinstance(items[0], str) and isinstance(items[2], str):
            line = items[1]
            if isinstance(line, tuple) and line[1] == ("reasons",) and line[2] == (True, False):
                self.simple = (items[0], cast(bytes, q[0]), line[0][0], items[2], cast(bytes, q[2]))
        return q

    def emit(
        self,
        values: Mapping[Any, str | Piece],
        sp: list[str],
        bp: list[bytes],
        enc: Encoder,
        lines: Lines,
    ) -> None:
        """``parts`` into ``sp``, each part's quoted-printable into ``bp`` (see
        ``Pattern.emit``); lines with values are finished through ``lines``."""
        q = self.q or self._encode()
        for item, qp, form in zip(self.items, q, self.forms, strict=True):
            if qp is not None:
                sp.append(item)
                bp.append(qp)
            elif isinstance(item, int):
                card = cast(Piece, values[item])
                sp.extend(card[0])
                bp.extend(card[1])
            else:
                assert form is not None
                own = self.quick and not OWN.isdisjoint(item[1])
                if own:  # a line of the subscriber's own: not worth remembering as is
                    done = lines.shaped(item, form, values, self.wrapper)
                    if done is not None:
                        sp.append(done[0])
                        bp.append(done[1])
                        continue
                pieces = form[0][:]
                for pos, key in form[1]:
                    pieces[pos] = cast(str, values[key])
                text = "".join(cast(list[str], pieces))
                done = lines.get(text) or lines.again(text)
                if done is None and self.quick and not own:
                    done = lines.shaped(item, form, values, self.wrapper)
                if done is None:
                    line = quick_line(self.wrapper, text) if self.quick else self.wrapper.line(text)
                    done = lines.add(text, line + "\n")
                sp.append(done[0])
                bp.append(done[1])


def _form(item: tuple[Any, ...]) -> tuple[list[str | None], list[tuple[int, Any]]]:
    """A text line with holes (a ``TextPattern`` item) as pieces to fill in."""
    lits, keys, order = item
    li, ki = iter(lits), iter(keys)
    pieces: list[str | None] = []
    slots: list[tuple[int, Any]] = []
    for lit in order:
        if lit:
            pieces.append(next(li))
        else:
            slots.append((len(pieces), next(ki)))
            pieces.append(None)
    return pieces, slots


# A link or an address in a text line stands in as a run of one filler character (its
# "=" kept, which quoted-printable writes as "=3D") while the line is wrapped and encoded.
_FILLERS = "`^|~"


def _word(value: str) -> bool:
    """Whether ``value`` wraps and encodes like any other word of its length and "="s."""
    return (
        len(value) >= 6
        and value[0].isalpha()
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


# (kind of reasons line, HTML before it, after it, their qp, their UTF-8 size, text before
# the reasons line, its qp, text after, its qp)
CardForm = tuple[int, str, str, bytes, bytes, int, str, bytes, str, bytes]


Spot = tuple[int, int, int, int, tuple[int, ...]]


class Lines:
    """Finished text lines (wrapped, with their line end) and their quoted-printable, by
    the line as the template made it (``Memo``); and lines whose values include a
    subscriber's own link or address, by the line with those as filler (``shaped``)."""

    __slots__ = ("get", "memo", "shapes")

    def __init__(self) -> None:
        self.memo: Memo[str, tuple[str, bytes]] = Memo()
        self.get = self.memo.get
        # -> the line and its qp with fillers, where each value goes (index, in the line,
        # its span in the qp, the soft line breaks inside), the last first; False when
        # the shortcut does not apply
        self.shapes: Memo[tuple[Any, ...], tuple[str, bytes, list[Spot]] | bool]
        self.shapes = Memo()

    def again(self, text: str) -> tuple[str, bytes] | None:
        return self.memo.again(text)

    def add(self, text: str, done: str) -> tuple[str, bytes]:
        if "\r" in done:
            raise _NoQp
        return self.memo.add(text, (done, qp_part(done)))

    def shaped(
        self,
        item: tuple[Any, ...],
        form: tuple[list[str | None], list[tuple[int, Any]]],
        values: Mapping[Any, Any],
        wrapper: Wrapper,
    ) -> tuple[str, bytes] | None:
        """The line (``quick_line``) and its quoted-printable made from the same line with
        each one-word value (a link, an address) as filler of its length: wrapping and
        encoding see only lengths there. None when no value is such a word, or when a
        filler does not come out whole (a soft line break inside it)."""
        pieces, slots = form
        key: list[Any] = [item]
        words: list[tuple[int, str, str]] = []
        for pos, name in slots:
            value = values[name]
            if len(words) < len(_FILLERS) and _word(value):
                fill = _FILLERS[len(words)]
                filler = (
                    "=".join([fill * len(p) for p in value.split("=")])
                    if "=" in value
                    else fill * len(value)
                )
                words.append((pos, value, filler))
                key.append(filler)
            else:
                key.append(value)
        if not words:
            return None
        shape = tuple(key)
        found = self.shapes.get(shape)
        if found is None:
            found = self.shapes.again(shape)
        if found is None:
            buf = pieces[:]
            for pos, name in slots:
                buf[pos] = values[name]
            for pos, _, filler in words:
                buf[pos] = filler
            text = "".join(cast(list[str], buf))
            done = quick_line(wrapper, text) + "\n"
            qp = qp_part(done)
            spots: list[tuple[int, int, int, int, tuple[int, ...]]] = []
            for j, (_, _, filler) in enumerate(words):
                units = _qp_units(filler)
                found_at = list(re.finditer(b"(?:=\r\n)?".join(map(re.escape, units)), qp))
                if text.count(filler) != 1 or done.count(filler) != 1 or len(found_at) != 1:
                    break
                m = found_at[0]
                # where soft line breaks fall inside the word, by unit
                breaks, unit, pos = [], 0, m.start()
                while pos < m.end():
                    if qp.startswith(b"=\r\n", pos):
                        breaks.append(unit)
                        pos += 3
                        continue
                    pos += len(units[unit])
                    unit += 1
                spots.append((j, done.index(filler), m.start(), m.end(), tuple(breaks)))
            else:
                spots.sort(key=lambda spot: spot[1:3], reverse=True)
                found = self.shapes.add(shape, (done, qp, spots))
            if found is None or "\r" in done:
                self.shapes.add(shape, False)  # known not to work
                return None
        if isinstance(found, bool):
            return None
        done, qp, spots = found
        for j, i, start, end, cuts in spots:  # from the end: earlier places stay put
            value = words[j][1]
            done = done[:i] + value + done[i + len(value) :]
            raw = value.encode()  # ASCII: one byte a character, "=" written "=3D"
            if cuts:
                chunks: list[bytes] = []
                prev = 0
                for unit in cuts:
                    if raw[unit : unit + 1] == b".":  # a line would start with a dot
                        return None
                    chunks.append(raw[prev:unit])
                    prev = unit
                chunks.append(raw[prev:])
                word = b"=\r\n".join([c.replace(b"=", b"=3D") for c in chunks])
            else:
                word = raw.replace(b"=", b"=3D")
            qp = qp[:start] + word + qp[end:]
        return done, qp


def _qp_units(word: str) -> list[bytes]:
    """A one-word ASCII value as quoted-printable, one unit per character ("=" is "=3D")."""
    return [b"=3D" if c == "=" else c.encode() for c in word]


class _Unsupported(Exception):
    """The templates do something the fast path cannot cut into pieces."""
