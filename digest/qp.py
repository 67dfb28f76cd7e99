"""Quoted-printable (RFC 2045) bodies, encoded by part and by line through caches.

Shared by the renderer's fast path, which encodes each piece of its templates once and hands
the message builder parts that carry their encoding (``EncodedParts``), and by the message
builder, which encodes whatever arrives without it (``QpEncoder``). Lines are at most 76
columns, and a line never starts with a dot (written "=2E"), so SMTP needs no dot-stuffing.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence


def _qp_line(line: str) -> bytes:
    """One line (without its line end) as quoted-printable, CRLF-terminated, at most 76
    columns; a leading "." is written "=2E" so SMTP never needs dot-stuffing."""
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


def _qp_open(text: str) -> bytes:
    """The start of a line (no line end) as quoted-printable ending in a soft line break
    (RFC 2045 rule 5), so that what follows continues the same line once decoded."""
    qp = _qp_line(text)[:-2]  # without the hard line end
    if len(qp) < 76:  # one short line (most parts): room for the "="
        return qp + b"=\r\n"
    start = qp.rfind(b"\r\n") + 2 if b"\r\n" in qp else 0
    last = qp[start:]
    if len(last) < 76:  # room for the "=" on the last encoded line
        return qp + b"=\r\n"
    cut = 73
    while last[cut - 1 : cut] == b"=" or last[cut - 2 : cut - 1] == b"=":
        cut -= 1  # never inside an "=XX" escape
    rest = last[cut:]
    if rest.startswith(b"."):
        rest = b"=2E" + rest[1:]
    return qp[:start] + last[:cut] + b"=\r\n" + rest + b"=\r\n"


def qp_part(part: str) -> bytes:
    """``_qp_part(part)``, at once for the common plain part: printable ASCII lines of at
    most 75 characters, no "=", no line starting with a dot or ending in a space (such
    lines encode to themselves)."""
    if (
        part.isascii()
        and "=" not in part
        and part[:1] != "."
        and part[-1:] != " "
        and "\n." not in part
        and " \n" not in part
    ):
        if "\n" not in part:
            if len(part) <= 75 and part.isprintable():
                return part.encode() + b"=\r\n"
        else:
            lines = part.split("\n")
            if max(map(len, lines)) <= 75 and "".join(lines).isprintable():
                body = part.replace("\n", "\r\n").encode()
                return body + b"=\r\n" if lines[-1] else body
    if "\r" not in part:  # all lines at once; what needs a second look goes the long way
        whole = part.endswith("\n")
        data = (part if whole else part + "\n").replace("\n", "\r\n")
        qp = binascii.b2a_qp(data.encode("utf-8", "replace"))
        if qp[:1] != b"." and b"\n." not in qp:
            encoded = qp.split(b"\r\n")  # the last one empty
            if max(map(len, encoded)) <= 76:
                if whole:
                    return qp
                if len(encoded[-2]) < 76:
                    return qp[:-2] + b"=\r\n"
    return _qp_part(part)


def qp_last(part: str) -> bytes:
    """The last part of a text when it does not end with a line end, as ``encode_parts``
    writes it: every line with a hard line end."""
    return b"".join([_qp_line(line) for line in part.split("\n")])


class EncodedParts(tuple[str, ...]):
    """Parts of a text (``Rendered.html_parts`` / ``text_parts``) that carry the text's
    quoted-printable body, exactly as ``QpEncoder.encode_parts`` would make it from them;
    the renderer's fast path makes them from encodings it keeps with its templates."""

    qp: bytes


def encoded_parts(parts: list[str], qps: list[bytes]) -> tuple[str, ...]:
    """``parts`` with their body, given each part's ``qp_part`` (``b""`` for an empty
    part): the last non-empty part, unless it ends a line, gets a hard line end."""
    k = len(parts) - 1
    while k >= 0 and not parts[k]:
        k -= 1
    if k < 0:
        return tuple(parts)
    if not parts[k].endswith("\n"):
        qps[k] = qp_last(parts[k])
    out = EncodedParts(parts)
    out.qp = b"".join(qps)
    return out


def _qp_part(part: str) -> bytes:
    """A piece of a text (it may start and end mid-line) as quoted-printable: its whole
    lines with hard line ends, its unfinished last line with a soft one."""
    if "\n" not in part:
        return _qp_open(part)
    *lines, tail = part.split("\n")
    out = [_qp_line(line) for line in lines]
    if tail:
        out.append(_qp_open(tail))
    return b"".join(out)


class QpEncoder:
    """Quoted-printable bodies, encoded line by line through a cache.

    Digests to different subscribers share most of their lines (layout, styles, the
    cards of the papers they have in common), so most lines are encoded once per run
    rather than once per message. Two generations bound the memory (about twice
    ``limit`` bytes of text): when the young one is full it becomes the old one, and
    lines still in use move back on their next hit.
    """

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.size = 0  # bytes held by the young generation
        self.young: dict[str, bytes] = {}
        self.old: dict[str, bytes] = {}
        # Parts seen once wait in ``fresh`` (small, two generations); a part seen again
        # (the layout, a card, a common reasons line) moves to ``shared``, which the churn
        # of per-message parts (names, links) never touches.
        self.fresh = QpParts(limit)
        self.shared: dict[str, bytes] = {}
        self.shared_size = 0
        self.shared_limit = SHARED_LIMIT

    def encode(self, text: str) -> bytes:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # the text's final line end
        young = self.young
        out = []
        for line in lines:
            qp = young.get(line)
            if qp is None:
                qp = self.old.get(line) or _qp_line(line)
                self.size += len(line) + len(qp)
                if self.size > self.limit:
                    self.old, self.young, self.size = young, {}, len(line) + len(qp)
                    young = self.young
                young[line] = qp
            out.append(qp)
        return b"".join(out)

    def encode_parts(self, parts: Sequence[str]) -> bytes:
        """``encode("".join(parts))`` up to where soft line breaks fall (they decode the
        same): each part is encoded on its own, through a cache keyed by the part, so the
        parts every message shares (the layout, the cards) cost a dictionary lookup."""
        parts = [p for p in parts if p]
        if not parts or any("\r" in p for p in parts[-1:]):
            return self.encode("".join(parts))
        *body, last = parts
        if last.endswith("\n"):
            body.append(last)
        out = []
        shared = self.shared
        for part in body:
            qp = shared.get(part)
            if qp is None:
                qp, again = self.fresh.encode(part)
                if qp is None:  # a carriage return: line ends need normalizing first
                    return self.encode("".join(parts))
                if again:
                    self._share(part, qp)
            out.append(qp)
        if not last.endswith("\n"):
            out.append(self.encode(last))  # the final line ends with a hard line end
        return b"".join(out)

    def _share(self, part: str, qp: bytes) -> None:
        self.shared_size += len(part) + len(qp)
        if self.shared_size > self.shared_limit:  # far more than an edition's cards
            self.shared.clear()
            self.shared_size = len(part) + len(qp)
        self.shared[part] = qp


SHARED_LIMIT = 24_000_000  # characters of parts and their encoding kept as shared


class QpParts:
    """``_qp_part`` through a two-generation cache, as ``QpEncoder`` does for lines."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.young: dict[str, bytes] = {}
        self.old: dict[str, bytes] = {}

    def encode(self, part: str) -> tuple[bytes | None, bool]:
        """(the part encoded, or None when it holds a carriage return; whether it was
        here already)."""
        qp = self.young.get(part)
        if qp is not None:
            return qp, True
        qp = self.old.get(part)
        again = qp is not None
        if qp is None:
            if "\r" in part:
                return None, False
            qp = _qp_part(part)
        self.size += len(part) + len(qp)
        if self.size > self.limit:
            self.old, self.young, self.size = self.young, {}, len(part) + len(qp)
        self.young[part] = qp
        return qp, again
