"""Who is sending a message: each run's claims in the delivery log, their leases, and whether
the run behind a claim left on a row is still alive.

A run claims the messages it is about to send (``DeliveryWriter.claim``: conditional, in
the database, so two runs never both get one) with a token naming it: its host, its machine
(kernel boot and process namespace), its process id and start time, and a number for each
run in the process. A claim lasts ``LEASE`` and the run renews it while it lives, so a run
on another machine that died leaves its messages to others once the lease lapses. A run on
this machine that died is known at once (no process with that id and start time, or, in
this process, a run that has ended): its messages are taken back without waiting.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import socket
import threading
from datetime import timedelta

LEASE = timedelta(minutes=5)  # how long a claim holds without being renewed
RENEW_EVERY = 60.0  # seconds between renewals of a run's claims
# Tries of one message whose outcome is unknown (the server may have taken it and said
# nothing: the connection dropped after the data, or the run died): once there are this
# many, across runs, the message is marked failed rather than sent again.
UNKNOWN_LIMIT = 3

_RUNS = itertools.count(1)
_ACTIVE: set[str] = set()  # this process's runs that are sending
_LOCK = threading.Lock()


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), or "" when there
    is no such process (or no /proc)."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else ""  # field 22: starttime


@functools.cache
def machine() -> str:
    """This kernel boot and process namespace, hashed; "" where that cannot be known (then
    only leases tell a dead run from a live one)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    if not boot:
        return ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:12]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"


class Claimant:
    """One run sending messages: its name in the delivery log and a token per claim."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.owner = f"{_host()}:{machine()}:{pid}:{start_time(pid)}:{next(_RUNS)}"
        self._claims = itertools.count(1)
        with _LOCK:
            _ACTIVE.add(self.owner)

    def token(self) -> str:
        """A claim's token: the run's name and a number no other claim of the run uses."""
        return f"{self.owner}#{next(self._claims)}"

    def close(self) -> None:
        """The run has ended: what it left "sending" may be taken back at once."""
        with _LOCK:
            _ACTIVE.discard(self.owner)


def gone(token: str) -> bool:
    """Whether the run that made claim ``token`` has certainly ended: it ran on this
    machine and its process is gone (or, in this process, the run has ended). False when
    that cannot be known (another machine): its lease decides."""
    owner = token.partition("#")[0]
    parts = owner.rsplit(":", 4)
    if len(parts) != 5:
        return False
    _, where, pid, started, _ = parts
    if not where or where != machine() or not pid.isdigit() or not started:
        return False
    if int(pid) == os.getpid() and started == start_time(os.getpid()):
        with _LOCK:
            return owner not in _ACTIVE
    return start_time(int(pid)) != started
