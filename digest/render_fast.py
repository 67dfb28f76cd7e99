"""The fast path: MJML and premailer once per edition, string assembly per subscriber.

How it works. Templates are rendered with unique marker strings in place of every
per-subscriber value and of every card, then compiled (Jinja -> MJML -> premailer) once:

* a *skeleton* per template, per number of cards and per "shape" (which per-subscriber
  values are empty, since templates may test them with ``{% if %}``): the compiled HTML is
  cut at the markers into literal pieces and holes. When a skeleton's MJML and its
  compiled HTML repeat one piece between card slots, skeletons for other numbers of cards
  (two or more) are put together from those pieces, without premailer, once their MJML
  and MJML's HTML show the same repetition;
* every paper's *card*, compiled once per edition, in two forms: with a marker as its
  reasons line, and without reasons. Cards alike in which fields are empty and which links
  they have go through premailer as one marked card, the others filled in (when their MJML
  is that card's with their text in, and the first of them compiled in full agrees).

A personalized digest is then the skeleton's pieces joined with the chosen cards and the
subscriber's values, escaped the way the HTML serializer would have written them. Each
piece carries its quoted-printable (``digest.mime.qp_part``), worked out once with the
piece, so the message body is one join too (``digest.mime.EncodedParts``); per-digest
values go through small caches (``Memo``). The first digest of each skeleton (or family
of skeletons) is also rendered the per-email way and compared; if a custom template does
something the fast path cannot reproduce, rendering falls back to the per-email path and
the log says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast

import jinja2
import markupsafe

from .mime import encoded_parts, qp_part
from .models import Paper, Scored
from .render import (
    CARD_HTML,
    CARD_TEXT,
    DIGEST_HTML,
    DIGEST_TEXT,
    EMPTY_HTML,
    EMPTY_TEXT,
    FIELDS,
    Card,
    Output,
    compile_mjml,
    inline_css,
    make_environment,
    mjml_to_html,
    reasons_line,
    render_template,
)
from .textfmt import WIDTH, Wrapper, squeeze

if TYPE_CHECKING:
    from .render import Renderer

log = logging.getLogger(__name__)

Escape = Callable[[str], str]
BATCH = 5000  # cards per compiled document


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


_WS_BETWEEN_TAGS = re.compile(r">\s+<")
_BLANKS = re.compile("\n\n\n")  # quicker than ``in`` over a text of many short lines

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


def normalize_html(html: str) -> str:
    """Whitespace between tags removed: the serializer's layout is not part of the meaning."""
    return _WS_BETWEEN_TAGS.sub("><", html).strip()


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


class _Repeat(NamedTuple):
    """A text cut at its card slots: ``first`` slot ``between`` slot ... slot ``last``."""

    first: str
    between: str
    last: str
    slot: str

    @classmethod
    def of(cls, pieces: list[str], slot: str) -> _Repeat:
        return cls(pieces[0], pieces[1], pieces[-1], slot)

    def join(self, count: int) -> str:
        s = self.slot
        return self.first + s + (self.between + s) * (count - 1) + self.last


class _Family:
    """A skeleton's pieces at three stages (MJML, MJML compiled, premailer's output), from
    the skeleton compiled for ``key``."""

    __slots__ = ("key", "mid", "out", "src")

    def __init__(
        self,
        key: tuple[str, tuple[bool, ...], int],
        src: list[str],
        mid: list[str],
        out: list[str],
        marker: str,
        slot: str,
    ) -> None:
        self.key = key
        self.src = _Repeat.of(src, marker)
        self.mid = _Repeat.of(mid, marker)
        self.out = _Repeat.of(out, slot)


class _Unsupported(Exception):
    """The templates do something the fast path cannot cut into pieces."""


class FastPath:
    def __init__(self, renderer: Renderer) -> None:
        self.r = renderer
        tok = secrets.token_hex(5)
        self.tok = tok
        self.field_marker = {name: f"q{tok}f{i}q" for i, name in enumerate(FIELDS)}
        self.reasons_marker = f"q{tok}rq"
        slot, begin, end = f"q{tok}sq", f"q{tok}bq", f"q{tok}eq"
        self.slot, self.begin, self.end = slot, begin, end
        base = renderer.loader
        real = jinja2.PrefixLoader({f"q{tok}real": base})

        def env(html: bool, overrides: dict[str, str]) -> jinja2.Environment:
            return make_environment(
                jinja2.ChoiceLoader([jinja2.DictLoader(overrides), real, base]), html=html
            )

        self.html_skeleton_env = env(True, {CARD_HTML: f"<mj-raw><!--{slot}--></mj-raw>\n"})
        self.text_skeleton_env = env(False, {CARD_TEXT: slot})
        self.html_cards_env = env(
            True,
            {
                CARD_HTML: f"<mj-raw><!--{begin}--></mj-raw>\n"
                f'{{% include "q{tok}real/{CARD_HTML}" %}}\n'
                f"<mj-raw><!--{end}--></mj-raw>\n"
            },
        )
        self.text_cards_env = env(
            False, {CARD_TEXT: f'{begin}{{% include "q{tok}real/{CARD_TEXT}" %}}{end}'}
        )
        names = "|".join(re.escape(m) for m in (slot, self.reasons_marker))
        fields = "|".join(re.escape(m) for m in self.field_marker.values())
        self.marker_re = re.compile(rf"<!--\s*{re.escape(slot)}\s*-->|{names}|{fields}")
        self.field_of = {m: name for name, m in self.field_marker.items()}
        self.card_tok = f"q{tok}c"
        self.card_markers = [f"q{tok}c{j}q" for j in range(15)]
        self.card_marker_re = re.compile("|".join(re.escape(m) for m in self.card_markers))
        self.skeletons: dict[tuple[str, tuple[bool, ...], int], tuple[Pattern, TextPattern]] = {}
        self.verified: set[tuple[str, tuple[bool, ...], int]] = set()
        # Skeletons per (template, shape) whose compiled HTML repeats one piece between
        # card slots: those for other card counts are put together from the pieces, no
        # premailer; ``proof`` maps such a skeleton's key to the key checked for it.
        self.slot_re = re.compile(rf"<!--\s*{re.escape(slot)}\s*-->")
        self.families: dict[tuple[str, tuple[bool, ...]], _Family] = {}
        self.proof: dict[tuple[str, tuple[bool, ...], int], tuple[str, tuple[bool, ...], int]] = {}
        self.quick = _quick_agrees(renderer.wrapper)
        # Each paper's card with a marker for its reasons (every digest needs it), and
        # without reasons, compiled only once some digest has a paper without any.
        self.cards: dict[tuple[Paper, int], tuple[Pattern, TextPattern]] = {}
        self.plain: dict[tuple[Paper, int], tuple[str, str]] = {}
        # level -> id(paper) -> (the paper, its card)
        self.by_object: dict[int, dict[int, tuple[Paper, tuple[Pattern, TextPattern]]]] = {}
        self.papers: list[Paper] = []  # this edition's
        self.disabled = ""
        self.enc = Encoder()
        self.lines = Lines()
        self.why: Memo[tuple[str, ...], str] = Memo()  # reasons lines by the reasons
        # (HTML escape, text line start, reasons line) -> the reasons' HTML part, its qp,
        # its UTF-8 size, the finished text line, its qp
        self.records: Memo[tuple[int, str], tuple[str, bytes, int, str, bytes]] = Memo()
        # kinds of reasons lines: (the HTML escape, the text line's start), numbered
        self.kinds: list[tuple[Escape, str]] = []
        self.kind_of: dict[tuple[Escape, str], int] = {}

    # -------------------------------------------------------- edition

    def begin_edition(self, papers: list[Paper]) -> None:
        """Compile the cards of this edition's papers; cards of papers that are still
        candidates (a weekly edition after the daily one) are kept, the others dropped."""
        keep = set(papers)
        self.cards = {k: v for k, v in self.cards.items() if k[0] in keep}
        self.plain = {k: v for k, v in self.plain.items() if k[0] in keep}
        self.by_object.clear()
        self.papers = list(dict.fromkeys(papers))
        if self.disabled or not papers:
            return
        level = self.r.levels[0]
        todo = [p for p in self.papers if (p, level) not in self.cards]
        try:
            self._compile_cards(todo, level, plain=False)
        except _Unsupported as exc:
            self._disable(str(exc))

    # -------------------------------------------------------- digests

    def render_digest(self, fields: dict[str, str], picks: Sequence[Scored], level: int) -> Output:
        """The digest's HTML and text, the parts they were joined from (the skeleton's
        pieces and the cards are the same objects for every subscriber) with the parts'
        quoted-printable, and the HTML's UTF-8 size."""
        if self.disabled:
            return Output(*self._naive(fields, picks, level))
        reasons = self._reasons(picks)
        try:
            html_sk, text_sk = self._skeleton(DIGEST_HTML, DIGEST_TEXT, fields, len(picks))
            frags = self._card_frags([p.paper for p in picks], level)
            bare = [p.paper for p, r in zip(picks, reasons, strict=True) if not r]
            plain = self._plain_frags(bare, level) if bare else []
        except _Unsupported as exc:
            self._disable(str(exc))
            return Output(*self._naive(fields, picks, level))
        try:
            out = self._encoded(fields, reasons, frags, plain, html_sk, text_sk)
        except _NoQp:
            out = self._joined(fields, reasons, frags, plain, html_sk, text_sk)
        key = (DIGEST_HTML, self._shape(fields), len(picks))
        key = self.proof.get(key, key)
        if key not in self.verified:
            self.verified.add(key)
            if not self._agrees(out.html, out.text, self._naive(fields, picks, level), "digest"):
                return Output(*self._naive(fields, picks, level))
        return out

    def _reasons(self, picks: Sequence[Scored]) -> list[str]:
        why = self.why
        known = why.get
        out = []
        for pick in picks:
            line = known(pick.reasons) or why.again(pick.reasons)
            if line is None:
                line = why.add(pick.reasons, reasons_line(pick))
            out.append(line)
        return out

    def _encoded(
        self,
        fields: dict[str, str],
        reasons: list[str],
        frags: list[tuple[Pattern, TextPattern]],
        plain: list[tuple[str, str]],
        html_sk: Pattern,
        text_sk: TextPattern,
    ) -> Output:
        enc, lines, records = self.enc, self.lines, self.records
        known = records.get
        hvals: dict[Any, str | Piece] = dict(fields)
        tvals: dict[Any, str | Piece] = dict(fields)
        bare = iter(plain)
        for i, (why, (hw, tw)) in enumerate(zip(reasons, frags, strict=True)):
            if not why:
                h, t = next(bare)
                hvals[i] = ([h], [enc(h)], utf8_len(h))
                tvals[i] = ([t], [enc(t)], 0)
                continue
            form = tw.card
            if form is not None:
                key = (form[0], why)
                rec = known(key) or records.again(key)
                if rec is None:
                    rec = self._record(form[0], why)
                hvals[i] = (
                    (form[1], rec[0], form[2]),
                    (form[3], rec[1], form[4]),
                    form[5] + rec[2],
                )
                tvals[i] = ((form[6], rec[3], form[8]), (form[7], rec[4], form[9]), 0)
                continue
            hvals[i] = hw.piece(why, enc)
            tp: list[str] = []
            tb: list[bytes] = []
            tw.emit({"reasons": why}, tp, tb, enc, lines)
            tvals[i] = (tp, tb, 0)
        html_parts: list[str] = []
        html_qp: list[bytes] = []
        size = html_sk.emit(hvals, html_parts, html_qp, enc)
        text_parts: list[str] = []
        text_qp: list[bytes] = []
        text_sk.emit(tvals, text_parts, text_qp, enc, lines)
        html = "".join(html_parts)
        text = "".join(text_parts)
        if text[:1] == "\n" or text[-1:] != "\n" or text[-2:] == "\n\n" or _BLANKS.search(text):
            raw, text = text, squeeze(text)
            if text != raw:  # blank lines squeezed across parts: the parts no longer add up
                text_parts, text_qp = [text], [qp_part(text)]
        return Output(
            html,
            text,
            encoded_parts(html_parts, html_qp),
            encoded_parts(text_parts, text_qp),
            size,
        )

    def _record(self, kind: int, why: str) -> tuple[str, bytes, int, str, bytes]:
        """A reasons line's HTML part and text line, with their quoted-printable."""
        esc, start = self.kinds[kind]
        part = esc(why)
        text = start + why
        wrapper = self.r.wrapper
        line = (quick_line(wrapper, text) if self.quick else wrapper.line(text)) + "\n"
        if "\r" in part or "\r" in line:
            raise _NoQp
        return self.records.add(
            (kind, why),
            (part, qp_part(part) if part else b"", utf8_len(part), line, qp_part(line)),
        )

    def _card_form(self, html: Pattern, text: TextPattern) -> CardForm | None:
        """The card's usual form: one reasons line in its HTML and one text line that
        starts with a literal and ends with the reasons (both encoded already)."""
        simple, one, ql = text.simple, html.one, html.qlits
        if simple is None or one is None or ql is None:
            return None
        kind = self.kind_of.setdefault((one[1], simple[2]), len(self.kinds))
        if kind == len(self.kinds):
            self.kinds.append((one[1], simple[2]))
        lits = html.lits
        return (kind, lits[0], lits[1], ql[0], ql[1], html.size, *simple[:2], *simple[3:])

    def _joined(
        self,
        fields: dict[str, str],
        reasons: list[str],
        frags: list[tuple[Pattern, TextPattern]],
        plain: list[tuple[str, str]],
        html_sk: Pattern,
        text_sk: TextPattern,
    ) -> Output:
        """As ``_encoded``, the parts alone (a part holds a carriage return)."""
        hvals: dict[Any, str | list[str]] = dict(fields)
        tvals: dict[Any, str | list[str]] = dict(fields)
        bare = iter(plain)
        for i, (why, (hw, tw)) in enumerate(zip(reasons, frags, strict=True)):
            if why:
                rv = {"reasons": why}
                hp: list[str] = []
                hw.parts(rv, hp)
                hvals[i] = hp
                tp: list[str] = []
                tw.parts(rv, tp)
                tvals[i] = tp
            else:
                hvals[i], tvals[i] = next(bare)
        html_parts: list[str] = []
        html_sk.parts(hvals, html_parts)
        html = "".join(html_parts)
        text_parts: list[str] = []
        text_sk.parts(tvals, text_parts)
        raw = "".join(text_parts)
        text = squeeze(raw)
        if text != raw:  # blank lines squeezed across parts: the parts no longer add up
            text_parts = [text]
        return Output(html, text, tuple(html_parts), tuple(text_parts))

    def render_empty(self, fields: dict[str, str]) -> tuple[str, str]:
        naive = self.r.naive
        if self.disabled:
            return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        try:
            html_sk, text_sk = self._skeleton(EMPTY_HTML, EMPTY_TEXT, fields, 0)
        except _Unsupported as exc:
            self._disable(str(exc))
            return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        html = html_sk.fill(fields)
        text = squeeze(text_sk.fill(fields))
        key = (EMPTY_HTML, self._shape(fields), 0)
        if key not in self.verified:
            self.verified.add(key)
            if not self._agrees(html, text, naive(fields, (), EMPTY_HTML, EMPTY_TEXT), "empty"):
                return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        return html, text

    # -------------------------------------------------------- helpers

    def _naive(
        self, fields: dict[str, str], picks: Sequence[Scored], level: int
    ) -> tuple[str, str]:
        cards = [replace(self.r.card(p.paper, level), reasons=reasons_line(p)) for p in picks]
        return self.r.naive(fields, cards, DIGEST_HTML, DIGEST_TEXT)

    def _agrees(self, html: str, text: str, naive: tuple[str, str], what: str) -> bool:
        if normalize_html(html) == normalize_html(naive[0]) and text == naive[1]:
            return True
        self._disable(f"the {what} templates give different output when cards are reused")
        return False

    def _disable(self, why: str) -> None:
        if not self.disabled:
            log.warning(
                "rendering every email in full (slower): %s; keep per-subscriber values out "
                "of card templates and include cards with {%% include %r %%}",
                why,
                CARD_HTML,
            )
        self.disabled = why

    @staticmethod
    def _shape(fields: Mapping[str, str]) -> tuple[bool, ...]:
        return tuple([bool(fields[name]) for name in FIELDS])

    def _marked_fields(self, shape: tuple[bool, ...]) -> dict[str, str]:
        return {
            name: (self.field_marker[name] if on else "")
            for name, on in zip(FIELDS, shape, strict=True)
        }

    def _skeleton(
        self, html_name: str, text_name: str, fields: Mapping[str, str], count: int
    ) -> tuple[Pattern, TextPattern]:
        shape = self._shape(fields)
        key = (html_name, shape, count)
        found = self.skeletons.get(key)
        if found is not None:
            return found
        dummy = Card(
            id="", title="", url="", authors="", summary="", stats="", links=(), categories=""
        )
        context = {**self.r.constants, **self._marked_fields(shape), "cards": [dummy] * count}
        mjml = render_template(self.html_skeleton_env, html_name, context)
        compiled = self._derived(key, mjml)
        if compiled is None:
            compiled = self._compiled(key, mjml)
        html = self._cut(compiled, count, html=True, what=html_name)
        text = render_template(self.text_skeleton_env, text_name, context)
        pair = (
            html,
            TextPattern(
                self._cut(text, count, html=False, what=text_name), self.r.wrapper, self.quick
            ),
        )
        self.skeletons[key] = pair
        return pair

    def _compiled(self, key: tuple[str, tuple[bool, ...], int], mjml: str) -> str:
        """The skeleton compiled in full; with two cards or more, kept as its family's
        pieces when they repeat."""
        html_name, shape, count = key
        html = mjml_to_html(mjml, html_name)
        compiled = inline_css(html)
        if count >= 2 and (html_name, shape) not in self.families:
            src = mjml.split(f"<!--{self.slot}-->")
            mid = self.slot_re.split(html)
            out = self.slot_re.split(compiled)
            slots = set(self.slot_re.findall(compiled))
            if (
                all(len(p) == count + 1 and len(set(p[1:-1])) == 1 for p in (src, mid, out))
                and len(slots) == 1
            ):
                marker = f"<!--{self.slot}-->"
                self.families[(html_name, shape)] = _Family(key, src, mid, out, marker, slots.pop())
        return compiled

    def _derived(self, key: tuple[str, tuple[bool, ...], int], mjml: str) -> str | None:
        """The compiled skeleton put together from its family's pieces, when its MJML and
        the MJML compiler's HTML (not premailer's) repeat the same pieces; else None."""
        html_name, shape, count = key
        family = self.families.get((html_name, shape))
        if family is None or count < 2:  # one slot alone is laid out differently
            return None
        marker = f"<!--{self.slot}-->"
        if mjml != family.src.join(count) or (
            self.slot_re.sub(marker, mjml_to_html(mjml, html_name)) != family.mid.join(count)
        ):
            return None
        self.proof[key] = family.key
        return family.out.join(count)

    def _cut(self, compiled: str, slots: int, *, html: bool, what: str) -> Pattern:
        lits: list[str] = []
        holes: list[tuple[Any, Escape]] = []
        pos = 0
        seen = 0
        for m in self.marker_re.finditer(compiled):
            lits.append(compiled[pos : m.start()])
            pos = m.end()
            token = m.group(0)
            if token.startswith("<!--") or token == self.slot:
                holes.append((seen, same_text))
                seen += 1
                continue
            key = "reasons" if token == self.reasons_marker else self.field_of[token]
            esc: Escape = same_text
            if html:
                esc = escape_attr if _in_tag(compiled, m.start()) else escape_text
            holes.append((key, esc))
        lits.append(compiled[pos:])
        if any(self.tok in lit.lower() for lit in lits):
            raise _Unsupported(f"{what} changes a per-subscriber value before showing it")
        if seen != slots:
            raise _Unsupported(f"{what} shows {seen} card slots for {slots} cards")
        return Pattern(lits, holes)

    def _card_frags(self, papers: Sequence[Paper], level: int) -> list[tuple[Pattern, TextPattern]]:
        # By the paper object first: hashing a Paper (all its fields) for every card of
        # every digest is a good part of the cost of a digest.
        by_object = self.by_object.setdefault(level, {})
        known = by_object.get
        out = []
        for p in papers:
            hit = known(id(p))
            if hit is None or hit[0] is not p:
                break
            out.append(hit[1])
        else:
            return out
        cards = self.cards
        missing = [p for p in papers if (p, level) not in cards]
        if missing:
            self._compile_cards(list(dict.fromkeys(missing)), level, plain=False)
        frags = [cards[(p, level)] for p in papers]
        for p, frag in zip(papers, frags, strict=True):
            by_object[id(p)] = (p, frag)  # the paper is kept: its id stays its own
        return frags

    def _plain_frags(self, papers: Sequence[Paper], level: int) -> list[tuple[str, str]]:
        """The cards without reasons; the first time one is needed, those of the whole
        edition are compiled together (one at a time would cost far more)."""
        plain = self.plain
        missing = [p for p in papers if (p, level) not in plain]
        if missing:
            todo = missing
            if level == self.r.levels[0] and self.papers:
                todo = [p for p in self.papers if (p, level) not in plain] + missing
            self._compile_cards(list(dict.fromkeys(todo)), level, plain=True)
        return [plain[(p, level)] for p in papers]

    def _compile_cards(self, papers: list[Paper], level: int, *, plain: bool) -> None:
        fields = self._marked_fields((True,) * len(FIELDS))
        wrapper = self.r.wrapper
        for start in range(0, len(papers), BATCH):
            batch = papers[start : start + BATCH]  # many: a premailer run costs 20 ms
            cards = [self.r.card(p, level) for p in batch]
            if not plain:
                cards = [replace(c, reasons=self.reasons_marker) for c in cards]
            context = {**self.r.constants, **fields, "cards": cards}
            htmls = self._card_htmls(cards, context)
            texts = self._between(
                render_template(self.text_cards_env, DIGEST_TEXT, context), len(batch), False
            )
            for paper, html, text in zip(batch, htmls, texts, strict=True):
                if not text.endswith("\n"):
                    raise _Unsupported(f"{CARD_TEXT} does not end with a new line")
                if plain:
                    if self.tok in html or self.tok in text:
                        raise _Unsupported(f"{CARD_HTML} uses a per-subscriber value")
                    self.plain[(paper, level)] = (html, wrapper.lines(text))
                    continue
                html_card = self._cut(html, 0, html=True, what=CARD_HTML)
                text_card = self._cut(text, 0, html=False, what=CARD_TEXT)
                for pattern, what in ((html_card, CARD_HTML), (text_card, CARD_TEXT)):
                    for key, _ in pattern.holes:
                        if key != "reasons":
                            raise _Unsupported(f"{what} uses the per-subscriber value {key!r}")
                text_pattern = TextPattern(text_card, wrapper, self.quick)
                with contextlib.suppress(_NoQp):  # then encoded as the digest is built
                    html_card._encode()
                    text_pattern._encode()
                    text_pattern.card = self._card_form(html_card, text_pattern)
                self.cards[(paper, level)] = (html_card, text_pattern)

    def _card_htmls(self, cards: list[Card], context: dict[str, Any]) -> list[str]:
        """Each card's compiled HTML. Cards alike in which fields are empty and which links
        they have (a *shape*) differ only in their text: one card per shape, its fields
        marked, goes through MJML and premailer, and the others are that card with their
        own text escaped in, when their MJML is the marked card's with their text in and
        the shape's first card compiled in full agrees. Other cards (text with "&", "<"
        or ">", a template that changes a field) are compiled in full."""
        src = render_template(self.html_cards_env, DIGEST_HTML, context)
        sources = self._between(src, len(cards), True)
        shapes: dict[tuple[Any, ...], tuple[Card, list[int]]] = {}
        values: list[dict[str, str] | None] = []
        for i, card in enumerate(cards):
            marked, vals = self._marked_card(card)
            key: tuple[Any, ...] = (marked.title, marked.url, marked.authors, marked.summary)
            key += (marked.stats, marked.categories, marked.id, marked.links)
            values.append(vals)
            if vals is not None:
                shapes.setdefault(key, (marked, []))[1].append(i)
        shape_list = list(shapes.values())
        if shape_list:
            marked_src = self._between(
                render_template(
                    self.html_cards_env,
                    DIGEST_HTML,
                    {**context, "cards": [m for m, _ in shape_list]},
                ),
                len(shape_list),
                True,
            )
            for (_, members), msrc in zip(shape_list, marked_src, strict=True):
                for i in list(members):
                    vals = values[i]
                    assert vals is not None
                    want = self.card_marker_re.sub(_escaped(vals), msrc)
                    if want != sources[i]:
                        members.remove(i)
                        values[i] = None
        shape_list = [(m, members) for m, members in shape_list if members]
        full = [i for i, v in enumerate(values) if v is None]
        probes = [members[0] for _, members in shape_list]
        todo = [m for m, _ in shape_list] + [cards[i] for i in probes] + [cards[i] for i in full]
        out: list[str] = [""] * len(cards)
        if not todo:
            return out
        compiled = self._between(
            compile_mjml(
                render_template(self.html_cards_env, DIGEST_HTML, {**context, "cards": todo}),
                DIGEST_HTML,
            ),
            len(todo),
            True,
        )
        n = len(shape_list)
        for i, html in zip(full, compiled[2 * n :], strict=True):
            out[i] = html
        again: list[int] = []
        for k, (_, members) in enumerate(shape_list):
            pattern = self._card_pattern(compiled[k])
            probe = members[0]
            vals = values[probe]
            if pattern is None or vals is None or pattern.fill(vals) != compiled[n + k]:
                again.extend(members)
                continue
            out[probe] = compiled[n + k]
            for i in members[1:]:
                out[i] = pattern.fill(cast(dict[str, str], values[i]))
        if again:  # a shape the shortcut does not reproduce: its cards the long way
            again_src = render_template(
                self.html_cards_env, DIGEST_HTML, {**context, "cards": [cards[i] for i in again]}
            )
            for i, html in zip(
                again,
                self._between(compile_mjml(again_src, DIGEST_HTML), len(again), True),
                strict=True,
            ):
                out[i] = html
        return out

    def _marked_card(self, card: Card) -> tuple[Card, dict[str, str] | None]:
        """The card with a marker for each field that has text, and each marker's text
        (None when some text holds "&", "<" or ">", or a marker)."""
        markers = self.card_markers
        vals: dict[str, str] = {}

        def mark(j: int, text: str) -> str:
            if not text:
                return ""
            vals[markers[j]] = text
            return markers[j]

        links = tuple((label, mark(7 + k, url)) for k, (label, url) in enumerate(card.links[:8]))
        marked = replace(
            card,
            id=mark(0, card.id),
            title=mark(1, card.title),
            url=mark(2, card.url),
            authors=mark(3, card.authors),
            summary=mark(4, card.summary),
            stats=mark(5, card.stats),
            categories=mark(6, card.categories),
            links=links + card.links[8:],
        )
        for text in vals.values():
            if "&" in text or "<" in text or ">" in text or self.tok in text:
                return marked, None
        return marked, vals

    def _card_pattern(self, compiled: str) -> Pattern | None:
        """A marked card's compiled HTML cut at its markers (escaped as the serializer
        writes text and attributes); None when a marker was changed on the way."""
        lits: list[str] = []
        holes: list[tuple[Any, Escape]] = []
        pos = 0
        for m in self.card_marker_re.finditer(compiled):
            lits.append(compiled[pos : m.start()])
            esc = escape_attr if _in_tag(compiled, m.start()) else escape_text
            holes.append((m.group(), esc))
            pos = m.end()
        lits.append(compiled[pos:])
        if any(self.card_tok in lit for lit in lits):
            return None
        return Pattern(lits, holes)

    def _between(self, compiled: str, count: int, html: bool) -> list[str]:
        if html:
            begin = re.compile(rf"<!--\s*{re.escape(self.begin)}\s*-->")
            end = re.compile(rf"<!--\s*{re.escape(self.end)}\s*-->")
        else:
            begin, end = re.compile(re.escape(self.begin)), re.compile(re.escape(self.end))
        pieces = []
        pos = 0
        while True:
            b = begin.search(compiled, pos)
            if b is None:
                break
            e = end.search(compiled, b.end())
            if e is None:
                break
            pieces.append(compiled[b.end() : e.start()])
            pos = e.end()
        if len(pieces) != count:
            raise _Unsupported(
                f"{DIGEST_HTML if html else DIGEST_TEXT} shows {len(pieces)} of {count} cards"
            )
        return pieces


def _escaped(values: dict[str, str]) -> Callable[[re.Match[str]], str]:
    """A marker's text as Jinja's autoescape writes it (for ``re.sub``)."""

    def sub(m: re.Match[str]) -> str:
        return str(markupsafe.escape(values[m.group()]))

    return sub


def _in_tag(html: str, pos: int) -> bool:
    """Whether ``pos`` is inside a tag (an attribute value) rather than in text."""
    return html.rfind("<", 0, pos) > html.rfind(">", 0, pos)
