"""One deadline for a whole fetch: connecting, TLS, sending the request, the headers, the
body, and (``_isolate``) parsing what came.

httpx's timeouts apply to each socket operation: a server that sends its headers one byte
every few seconds never trips a 10 s read timeout and holds a fetch for as long as it likes.
``Deadline`` is a moment after which no socket operation may wait: the network backend
below gives each connect, read and write at most the time left (and fails at once when
none is), so the whole exchange ends by the deadline, headers included.
"""

from __future__ import annotations

import logging
import ssl
import time
import typing

import httpcore
import httpx

log = logging.getLogger(__name__)


class Deadline:
    """A moment on the monotonic clock, or none. Set per fetch by the ``Fetcher``."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.seconds = 0.0

    def start(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def clear(self) -> None:
        self.at = None

    def left(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def limit(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` cut to the time left; ``error`` when none is."""
        left = self.left()
        if left is None:
            return timeout
        if left <= 0:
            raise error(f"the fetch took longer than its {self.seconds:g} s")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self.deadline.limit(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.deadline.limit(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        limit = self.deadline.limit(timeout, httpcore.ConnectTimeout)
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, limit), self.deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self.inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        limit = self.deadline.limit(timeout, httpcore.ConnectTimeout)
        stream = self.inner.connect_tcp(host, port, limit, local_address, socket_options)
        return _Stream(stream, self.deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        limit = self.deadline.limit(timeout, httpcore.ConnectTimeout)
        return _Stream(self.inner.connect_unix_socket(path, limit, socket_options), self.deadline)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def bound(client: httpx.Client, deadline: Deadline) -> bool:
    """Make every connection ``client`` opens keep to ``deadline``. httpx has no public
    way to give its transport a network backend: its connection pool's one is replaced
    (the slow-headers tests fail if a new httpx moves it). False when it cannot be."""
    transports = [client._transport, *client._mounts.values()]
    done = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if isinstance(inner, httpcore.NetworkBackend):
            pool._network_backend = _Backend(inner, deadline)  # type: ignore[union-attr]
            done = True
    if not done:
        log.debug("no network backend to bound: fetches rely on httpx's timeouts only")
    return done
