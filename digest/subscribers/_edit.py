"""A subscriber's own file, edited from the web: read with a version (so a save never
overwrites a change made on disk since the page was opened), updated key by key with
tomlkit (comments and keys the page does not know survive), written atomically and only
when it validates; and erased on request."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from ..config import Config
from ..errors import ProfileError
from ._manage import (
    _clean,
    _text_item,
    find_subscriber_file,
    normalize_email,
    read_subscriber_file,
    write_validated,
)

# Keys the preferences page edits; any other key in the file is left as it is.
EDITABLE = (
    "name",
    "interests",
    "keywords",
    "authors",
    "categories",
    "category_mode",
    "exclude",
    "max_papers",
    "min_score",
    "timezone",
    "send_hour",
    "frequency",
    "weekday",
    "active",
)


class ChangedOnDisk(ProfileError):
    """The file changed since the page showing it was made."""


@dataclass(frozen=True)
class SubscriberFile:
    path: Path
    text: str
    data: dict[str, Any]  # the file's values, as plain Python

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def read_subscriber(cfg: Config, email: str, *, hint: str = "") -> SubscriberFile | None:
    """The file holding ``email`` with its text and values, or None (``hint``: its name as
    last known, see ``find_subscriber_file``)."""
    found = read_subscriber_file(cfg.subscribers_path, email, hint=hint)
    if found is None:
        return None
    return SubscriberFile(*found)


def update_subscriber(
    cfg: Config, email: str, changes: Mapping[str, Any], *, version: str, hint: str = ""
) -> SubscriberFile:
    """Apply ``changes`` (keys of ``EDITABLE``; None removes a key) to the file of
    ``email``, if it is still at ``version``. Raises ChangedOnDisk when it is not, and
    ProfileError when the result would not validate (the file is then untouched)."""
    current = read_subscriber(cfg, email, hint=hint)
    if current is None:
        raise ProfileError(f"{normalize_email(email)}: no subscriber file holds this address")
    if current.version != version:
        raise ChangedOnDisk(
            f"{current.path.name} changed since this page was opened; nothing was saved"
        )
    doc = tomlkit.parse(current.text)
    for key, value in changes.items():
        if key not in EDITABLE:
            raise ProfileError(f"{key}: not a setting this page can change")
        if value is None or (value == [] and key not in doc):
            if key in doc:
                del doc[key]
            continue
        doc[key] = _item(key, value)
    text = tomlkit.dumps(doc)
    if text != current.text:
        write_validated(current.path, text)
    return SubscriberFile(current.path, text, doc.unwrap())


def _item(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key == "interests":
            return _text_item(value)
        return _clean(value).replace("\n", " ").strip()
    if isinstance(value, list):  # an inline array, tables in it inline too
        out = tomlkit.array()
        for v in value:
            if isinstance(v, dict):
                table = tomlkit.inline_table()
                table.update(v)
                out.append(table)
            else:
                out.append(_clean(v).replace("\n", " ").strip() if isinstance(v, str) else v)
        return out
    return value


def delete_subscriber_file(cfg: Config, email: str, *, hint: str = "") -> Path | None:
    """Remove the file holding ``email`` (erasure); the path removed, or None."""
    found = find_subscriber_file(cfg.subscribers_path, email, hint=hint)
    if found is None:
        return None
    found[0].unlink()
    return found[0]
