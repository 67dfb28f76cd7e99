"""The outbox: each message written to ``<outbox>/<edition>/<name>.eml`` when no SMTP host is
configured (the demo, previews of a whole run, a relay that picks up files)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from ..config import Config
from ..errors import SendError
from ..models import Profile
from ._log import DeliveryLog, Job, defer


def eml_name(profile: Profile) -> str:
    """A safe file name for a subscriber's .eml in the outbox: the subscriber file's name
    (or the address, for a profile that did not come from a file) in safe characters, then
    a hash of the address. Safe characters alone would give ``a b.toml`` and ``a_b.toml``
    (or ``zoë`` and ``zo_``) one name; the hash is the delivery log's key, the address, so
    two subscribers never share a file (64 bits: one chance in 10^9 at 100,000 of them),
    whatever the case rules of the file system."""
    name = profile.path.stem if profile.path is not None else profile.email
    stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._")[:80] or "subscriber"
    tag = hashlib.sha256(profile.email.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{stem}.{tag}.eml"


def outbox_path(cfg: Config, profile: Profile, edition: date) -> Path:
    return cfg.outbox_path / edition.isoformat() / eml_name(profile)


class Outbox:
    """Writes each message to ``<outbox>/<edition>/<slug>.eml`` (used when no SMTP host)."""

    def __init__(self, cfg: Config, dlog: DeliveryLog, halt: threading.Event | None) -> None:
        self.cfg = cfg
        self.dlog = dlog
        self.halt = halt

    def run(self, jobs: Iterator[list[Job]]) -> list[Job]:
        """Write every job; returns those left when ``halt`` was set."""
        for batch in jobs:
            for i, job in enumerate(batch):
                if self.halt is not None and self.halt.is_set():
                    return batch[i:]
                path = outbox_path(self.cfg, job.item.profile, job.item.edition)
                job.tries += 1
                try:
                    _write(path, job.data)
                except OSError as exc:
                    error = SendError(
                        f"{path}: cannot write to the outbox ({exc.strerror}); check `outbox` "
                        "in the config and the folder's permissions"
                    )
                    defer(self.dlog, batch[i:], str(error))
                    raise error from exc
                self.dlog.record(job, "sent", f"written to {path}")
        return []


def _write(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all: written to a temporary file beside it,
    flushed to disk, then renamed over it (and the rename flushed too, so a file marked
    sent survives a power cut). A write that fails leaves no temporary file behind; one a
    crash cuts short is overwritten by the run that sends the message again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
