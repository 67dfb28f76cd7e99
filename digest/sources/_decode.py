"""A response body through its Content-Encoding, counted as it streams out.

httpx decodes each chunk it reads in full: one 2 KB chunk of ``gzip, gzip`` can hold a
gigabyte, and a size limit checked after the chunk comes too late. Here every layer of
encoding is undone a bounded piece at a time (``PIECE`` bytes of output at most per step),
so the decoded size is checked while it grows and memory stays within the limit plus a
few pieces, however many layers are stacked and whatever they hold.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from ..errors import FeedError

PIECE = 64 * 1024  # most bytes of output one step of one layer makes
MAX_LAYERS = 8  # real servers send one; "gzip, gzip" is a bomb or a misconfiguration


class _Layer:
    """One encoding undone: gzip (several members too), deflate (zlib or raw) or identity."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.first = True
        self.d: zlib._Decompress | None = self._new()

    def _new(self) -> zlib._Decompress | None:
        if self.coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.coding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS)
        return None  # identity

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.d is None:
            for i in range(0, len(data), PIECE):
                yield data[i : i + PIECE]
            return
        while True:
            try:
                out = self.d.decompress(data, PIECE)
            except zlib.error:
                if self.coding == "deflate" and self.first:
                    # "deflate" is meant to be zlib-wrapped; some servers send it raw
                    self.first = False
                    self.d = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise
            self.first = False
            if out:
                yield out
            if self.d.eof:
                rest = self.d.unused_data
                if not rest or self.coding == "deflate":
                    return
                self.d = self._new()  # another gzip member follows
                assert self.d is not None
                data = rest
                continue
            data = self.d.unconsumed_tail
            if not data and len(out) < PIECE:
                return  # all input taken, no output waiting

    def flush(self) -> Iterator[bytes]:
        if self.d is not None and not self.d.eof:
            tail = self.d.flush()
            for i in range(0, len(tail), PIECE):
                yield tail[i : i + PIECE]
            raise zlib.error("the stream ends before its end")


class Decoder:
    """Undo ``codings`` (the Content-Encoding list, in the order they were applied)."""

    def __init__(self, codings: list[str], where: str) -> None:
        names = [c.strip().lower() for c in codings if c.strip()]
        names = [c for c in names if c != "identity"]
        unknown = [c for c in names if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise FeedError(
                f"{where}: the body is encoded as {unknown[0]!r}, which we did not ask for "
                "(Accept-Encoding: gzip, deflate); check the url or the server"
            )
        if len(names) > MAX_LAYERS:
            raise FeedError(
                f"{where}: the body is compressed {len(names)} times over "
                f"(at most {MAX_LAYERS}); not a feed we read"
            )
        # the last coding listed was applied last: it is undone first
        self.layers = [_Layer(c) for c in reversed(names)]
        self.where = where

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            yield from self._through(0, data)
        except zlib.error as exc:
            raise FeedError(
                f"{self.where}: the compressed body is corrupt ({exc}); try again later"
            ) from exc

    def flush(self) -> Iterator[bytes]:
        try:
            for i, layer in enumerate(self.layers):
                for piece in layer.flush():
                    yield from self._through(i + 1, piece)
        except zlib.error as exc:
            raise FeedError(
                f"{self.where}: the compressed body is corrupt ({exc}); try again later"
            ) from exc

    def _through(self, i: int, data: bytes) -> Iterator[bytes]:
        if i == len(self.layers):
            if data:
                yield data
            return
        for piece in self.layers[i].feed(data):
            yield from self._through(i + 1, piece)
