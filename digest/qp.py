"""Quoted-printable (RFC 2045) bodies: one encoding of a text, whatever parts it comes in.

A text's body is its lines, each encoded on its own (``_qp_line``): at most 76 columns, soft
line breaks only where a line is too long, a line never starting with a dot (written
"=2E", so SMTP needs no dot-stuffing). ``QpEncoder.encode`` encodes a text through a cache
of lines; ``QpEncoder.encode_parts`` encodes a text given as parts (the renderer's fast
path joins digests from the same pieces for every subscriber) to exactly the same bytes,
encoding each piece's whole lines once and only the lines that cross from piece to piece
for each message.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


def _qp_line(line: str) -> bytes:
    """One line (without its line end) as quoted-printable, CRLF-terminated, at most 76
    columns; a leading "." is written "=2E" so SMTP never needs dot-stuffing."""
    if line.isascii() and line.isprintable() and line[:1] != "." and line[-1:] != " ":
        # Printable ASCII, as most lines of both parts are: only "=" needs escaping, and
        # the soft line breaks go where b2a_qp puts them (``_soft``), five times quicker
        # than b2a_qp on a long line of inline-styled HTML (it takes 30 ns a byte).
        enc = line.replace("=", "=3D") if "=" in line else line
        if len(enc) <= 75:
            return enc.encode() + b"\r\n"
        soft = _soft(enc)
        if soft is not None:
            return soft
    return _encoded(line)


def _soft(enc: str) -> bytes | None:
    """``enc`` (printable ASCII, its "=" already written "=3D") cut as b2a_qp cuts a
    line: each piece the longest run of whole characters and escapes that fits in 75
    columns, then a soft line break; None when a piece would start with a dot."""
    pieces = []
    start, end = 0, len(enc)
    while end - start > 75:
        cut = start + 75
        if enc[cut - 1] == "=":  # never inside an escape
            cut -= 1
        elif enc[cut - 2] == "=":
            cut -= 2
        pieces.append(enc[start:cut])
        start = cut
        if enc[start] == ".":
            return None
    pieces.append(enc[start:])
    return "=\r\n".join(pieces).encode() + b"\r\n"


def _encoded(line: str) -> bytes:
    """``_qp_line`` the long way, for any line: b2a_qp, then leading dots and over-long
    lines mended."""
    qp = binascii.b2a_qp(line.encode("utf-8", "replace") + b"\r\n")
    if not (qp.startswith(b".") or b"\n." in qp):
        # b2a_qp lets a line ending in encoded white space ("=20") reach 77 columns
        if len(qp) - qp.rfind(b"\n", 0, len(qp) - 2) > 79:
            return _refit(qp)
        return qp
    if qp.startswith(b"."):
        qp = b"=2E" + qp[1:]
    return _refit(qp.replace(b"\r\n.", b"\r\n=2E"))


def _refit(qp: bytes) -> bytes:
    """Encoded lines made longer than 76 characters (a leading dot written "=2E") split
    again with soft line breaks, never inside an "=XX" escape."""
    out = []
    for line in qp.split(b"\r\n")[:-1]:
        soft = line.endswith(b"=")  # an escape would have two characters after its "="
        rest = line[:-1] if soft else line
        while len(rest) > (75 if soft else 76):
            cut = 75
            while rest[cut - 1 : cut] == b"=" or rest[cut - 2 : cut - 1] == b"=":
                cut -= 1
            out.append(rest[:cut] + b"=")
            rest = rest[cut:]
            if rest.startswith(b"."):
                rest = b"=2E" + rest[1:]
        out.append(rest + b"=" if soft else rest)
    return b"\r\n".join(out) + b"\r\n"


# A part with a line end, ready to join: (its text up to the first line end, its whole
# lines after that encoded, its text after the last line end, the first as a line alone
# encoded)
Form = tuple[str, bytes, str, bytes]


class QpEncoder:
    """Quoted-printable bodies, encoded line by line through caches.

    Digests to different subscribers share most of their lines (layout, styles, the cards
    of the papers they have in common), so most lines are encoded once per run rather than
    once per message. Lines and parts seen once wait in a small cache of their own (cleared
    when full); seen again, they move to the shared one, which the churn of lines that hold
    a subscriber's own values (an address, a link) does not touch.
    """

    def __init__(self, limit: int = 4_000_000, shared_limit: int = 24_000_000) -> None:
        # characters of text and encoding kept: ``limit`` for what was seen once (each
        # cache), ``shared_limit`` for what came back (far more than an edition's cards)
        self.lines = _Tiers[bytes](limit, shared_limit)
        self.forms = _Tiers[Form](limit, shared_limit)

    def encode(self, text: str) -> bytes:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # the text's final line end
        return b"".join([self._line(line) for line in lines])

    def _line(self, line: str) -> bytes:
        tiers = self.lines
        qp = tiers.shared.get(line) or tiers.again(line)
        if qp is None:
            qp = tiers.add(line, _qp_line(line), len(line))
        return qp

    def encode_parts(self, parts: Sequence[str]) -> bytes:
        """Exactly ``encode("".join(parts))``: the whole lines inside each part encoded
        once per part (the layout and the cards come back in every message), the lines
        that run from one part into the next encoded as they are met."""
        forms = self.forms
        shared = forms.shared.get
        line = self._line
        out: list[bytes] = []
        pending: list[str] = []  # the current line's pieces so far, none empty
        for part in parts:
            form = shared(part)
            if form is None:
                end = part.find("\n")
                if end < 0 or end == len(part) - 1:  # no line end, or one at the end
                    if "\r" in part:
                        return self.encode("".join(parts))
                    if end < 0:
                        if part:
                            pending.append(part)
                        continue
                    pending.append(part[:-1])  # a line of a text part, often seen once
                    out.append(line("".join(pending)))
                    pending = []
                    continue
                form = forms.again(part)
                if form is None:
                    if "\r" in part:
                        return self.encode("".join(parts))
                    form = forms.add(part, self._form(part), len(part))
            head, body, tail, alone = form
            if pending:
                pending.append(head)
                out.append(line("".join(pending)))
            else:
                out.append(alone)
            if body:
                out.append(body)
            pending = [tail] if tail else []
        if pending:
            out.append(line("".join(pending)))
        elif not out:  # no line end at all: an empty text is one empty line
            out.append(_qp_line(""))
        return b"".join(out)

    def _form(self, part: str) -> Form:
        head, _, rest = part.partition("\n")
        inner, more, tail = rest.rpartition("\n")
        body = b"".join([_qp_line(x) for x in inner.split("\n")]) if more else b""
        return head, body, tail, _qp_line(head)


class _Tiers(Generic[V]):
    """A cache in two tiers, bounded by the characters of their keys and values: a key
    seen once waits in ``fresh`` (cleared when it holds ``limit``); seen again, it moves to
    ``shared`` (cleared only if it outgrows ``shared_limit``). Look in ``shared.get``
    first, then ``again``."""

    __slots__ = ("fresh", "fresh_size", "limit", "shared", "shared_limit", "shared_size")

    def __init__(self, limit: int, shared_limit: int) -> None:
        self.limit = limit
        self.shared_limit = shared_limit
        self.fresh: dict[str, V] = {}
        self.shared: dict[str, V] = {}
        self.fresh_size = 0
        self.shared_size = 0

    def again(self, key: str) -> V | None:
        value = self.fresh.pop(key, None)
        if value is not None:
            size = 2 * len(key)
            if self.shared_size + size > self.shared_limit:
                self.shared.clear()
                self.shared_size = 0
            self.shared[key] = value
            self.shared_size += size
        return value

    def add(self, key: str, value: V, size: int) -> V:
        if self.fresh_size + 2 * size > self.limit:
            self.fresh.clear()
            self.fresh_size = 0
        self.fresh[key] = value
        self.fresh_size += 2 * size
        return value
