"""Adding, removing and listing subscribers: ``subscribers/*.toml`` edited with tomlkit (so
comments and layout survive), plus the suppression list in the database.

An unsubscribe is recorded twice: ``active = false`` in the file and a suppression in the
database. The suppression wins over the file (someone re-enabling the file by hand does not
resume mail) until the person subscribes again with ``digest subscribe``.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import ParseError
from tomlkit.items import Item
from tomlkit.toml_document import TOMLDocument

from ..config import Config
from ..errors import ConfigError, ProfileError, UsageError
from ..models import Profile
from ..store import Store
from ..tokens import ERASED
from ..validation import loads_fast
from ._due import describe_timing
from ._files import check_email, load_profile, load_profiles, profile_files, subscribers_missing


@dataclass(frozen=True)
class Subscribed:
    path: Path
    action: str  # "created" or "resubscribed"


@dataclass(frozen=True)
class SubscriberRow:
    profile: Profile
    status: str  # active / inactive / unsubscribed / suppressed
    timing: str
    last_edition: date | None
    digests: int
    papers: int
    suppressed_at: datetime | None = None
    reason: str = ""


def slugify(text: str) -> str:
    """'Zoë Müller' -> 'zoe-muller': a file name made of [a-z0-9-]."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:40].strip("-") or "subscriber"


def normalize_email(email: str) -> str:
    """The address as compared everywhere (lower-cased, normalized); UsageError if invalid."""
    try:
        return check_email(email.strip()).lower()
    except ValueError as exc:
        raise UsageError(f"{email!r}: {exc}; give one address like ada@example.org") from exc


def find_subscriber_file(
    directory: Path, email: str, *, hint: str = ""
) -> tuple[Path, TOMLDocument] | None:
    """The subscriber file holding ``email`` (even when the rest of it does not validate).
    ``hint``: the file's name as last known (the store's ``subscriber_files``), looked at
    first; every file is read only when it does not hold the address."""
    key = normalize_email(email)
    local = key.split("@")[0]
    hinted = directory / hint if hint and "/" not in hint and not hint.startswith(".") else None
    if hinted is not None and hinted.suffix == ".toml" and hinted.is_file():
        found = _holds(hinted, key, local, email)
        if found is not None:
            return found
    for path in profile_files(directory):
        found = _holds(path, key, local, email)
        if found is not None:
            return found
    return None


def read_subscriber_file(
    directory: Path, email: str, *, hint: str = ""
) -> tuple[Path, str, dict[str, Any]] | None:
    """``find_subscriber_file`` for reading only: (path, text, values), parsed with the
    compiled parser (tomlkit, ten times slower, is for writing)."""
    key = normalize_email(email)
    local = key.split("@")[0]
    for path in _hinted_first(directory, hint):
        text = path.read_text(encoding="utf-8", errors="replace")
        if local not in text.lower():
            continue
        try:
            data = loads_fast(text)
        except tomllib.TOMLDecodeError as exc:
            if key in text.lower():
                raise ProfileError(
                    f"{path}: mentions {email} but is not valid TOML ({exc}); fix it first "
                    "(digest check shows the problem)"
                ) from exc
            continue
        value = data.get("email")
        if isinstance(value, str) and _same_email(value, key):
            return path, text, data
    return None


def _hinted_first(directory: Path, hint: str) -> Iterator[Path]:
    """The file the store names first; the folder is listed only when that file does not
    hold the address."""
    hinted = directory / hint if hint and "/" not in hint and not hint.startswith(".") else None
    if hinted is not None and hinted.suffix == ".toml" and hinted.is_file():
        yield hinted
    yield from profile_files(directory)


def _holds(path: Path, key: str, local: str, email: str) -> tuple[Path, TOMLDocument] | None:
    """(path, document) when the file at ``path`` holds the address ``key``."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if local not in text.lower():
        return None
    try:
        doc = tomlkit.parse(text)
    except ParseError as exc:
        if key in text.lower():
            raise ProfileError(
                f"{path}: mentions {email} but is not valid TOML ({exc}); fix it first "
                "(digest check shows the problem)"
            ) from exc
        return None
    value = doc.get("email")
    if isinstance(value, str) and _same_email(value, key):
        return path, doc
    return None


def subscribe(
    cfg: Config,
    store: Store,
    email: str,
    *,
    now: datetime,
    name: str = "",
    interests: str = "",
    keywords: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
) -> Subscribed:
    """Write ``subscribers/<slug>.toml`` for a new subscriber, or re-activate someone who
    unsubscribed; clears their suppression. Refuses an address that is already subscribed.

    ``settings`` holds optional keys written as given: timezone, send_hour, frequency,
    weekday, max_papers.
    """
    key = normalize_email(email)
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    directory = cfg.subscribers_path
    if not directory.is_dir():
        raise ConfigError(subscribers_missing(cfg))
    found = find_subscriber_file(directory, key)
    if found is not None:
        path, doc = found
        active = doc.get("active", True) is not False
        if active and key not in store.suppressed():
            raise ProfileError(
                f"{email} is already subscribed ({path}); edit that file to change what they "
                "get, or unsubscribe them first"
            )
        doc["active"] = True
        _update(doc, name=name, interests=interests, keywords=keywords, settings=settings)
        _write_given(path, tomlkit.dumps(doc))
        store.unsuppress(key)
        forget_erasure(cfg, store, key)
        return Subscribed(path, "resubscribed")
    if not (interests.strip() or keywords):
        raise UsageError(
            f"{email}: a new subscriber needs --interests TEXT (what they want to read about) "
            "or at least one --keyword"
        )
    path = _free_path(directory, slugify(name or key.split("@")[0]))
    text = new_subscriber_text(
        check_email(email.strip()), name, interests, keywords, settings, today=now.date()
    )
    _write_given(path, text)
    store.unsuppress(key)
    forget_erasure(cfg, store, key)
    return Subscribed(path, "created")


def forget_erasure(cfg: Config, store: Store, email: str) -> None:
    """They subscribe again (confirmed, or by the operator): an erasure of the address no
    longer keeps it from being mailed."""
    if store.count_erased():
        store.forget_erased(cfg.link_tokens().make(ERASED, email))


def _write_given(path: Path, text: str) -> None:
    """``write_validated`` for a file made of what a command was given: a value it refuses
    (a timezone that does not exist, say) is a usage error."""
    try:
        write_validated(path, text)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


def unsubscribe(
    cfg: Config,
    store: Store,
    email: str,
    *,
    now: datetime,
    reason: str = "",
    unknown_ok: bool = False,
) -> Path | None:
    """Suppress ``email`` in the database and set ``active = false`` in their file.

    Returns the file changed, or None when no file holds the address but the database
    knows it (it was sent digests, or suppressed before): the suppression is recorded, so
    a file added later does not mail them either. An address neither knows is most likely
    mistyped: UsageError (exit 2, like any unknown subscriber on the command line), nothing
    recorded, unless ``unknown_ok``.
    """
    key = normalize_email(email)
    if not cfg.subscribers_path.is_dir():
        raise ConfigError(subscribers_missing(cfg))
    hint = store.subscriber_files([key]).get(key, "")
    found = read_subscriber_file(cfg.subscribers_path, key, hint=hint)
    if found is None and not unknown_ok and not _known(store, key):
        raise UsageError(
            f"{email}: unknown address: no subscriber file has it and it was never sent a "
            "digest; check the spelling (digest subscribers lists everyone), or pass --force "
            "to suppress it anyway"
        )
    store.suppress(key, now, reason or "unsubscribed with digest unsubscribe")
    if found is None:
        return None
    path, text, data = found
    if data.get("active", True) is not False:  # tomlkit (comments kept) only to write
        doc = tomlkit.parse(text)
        doc["active"] = False
        write_validated(path, tomlkit.dumps(doc))
    return path


def _known(store: Store, key: str) -> bool:
    """Whether the database has seen ``key``: read from a file, sent to, or suppressed."""
    if store.subscriber_files([key]) or key in store.suppressed():
        return True
    return key in store.subscriber_stats()


def subscriber_rows(cfg: Config, store: Store) -> tuple[list[SubscriberRow], list[ProfileError]]:
    """Every subscriber file with its status and what it has been sent, sorted by email."""
    profiles, errors = load_profiles(cfg.subscribers_path, store)
    suppressions = store.suppressions()
    stats = store.subscriber_stats()
    rows = []
    for p in sorted(profiles, key=lambda p: p.email.lower()):
        key = p.email.lower()
        at, why = suppressions.get(key, (None, ""))
        if at is not None:
            status = "unsubscribed" if not p.active else "suppressed"
        else:
            status = "active" if p.active else "inactive"
        last, digests, papers = stats.get(key, (None, 0, 0))
        rows.append(SubscriberRow(p, status, describe_timing(p), last, digests, papers, at, why))
    return rows, errors


# ---------------------------------------------------------------- files


def write_validated(path: Path, text: str) -> None:
    """Write a subscriber file only if it validates; atomically (never half-written). Each
    writer has a temporary file of its own: two requests writing one file at once (a mail
    provider retrying a one-click unsubscribe) each replace it whole, neither fails."""
    # dot files are not read as subscribers
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_profile(tmp)
    except ProfileError as exc:
        tmp.unlink(missing_ok=True)
        raise ProfileError(str(exc).replace(str(tmp), str(path))) from exc
    os.replace(tmp, path)


def new_subscriber_text(
    email: str,
    name: str,
    interests: str,
    keywords: Sequence[str],
    settings: dict[str, Any],
    *,
    today: date,
) -> str:
    """A new subscriber file, commented like the examples."""
    lines = [
        f"# Added with `digest subscribe` on {today.isoformat()}. Edit freely; check it with",
        "# `digest check`. Only `email` and one of interests / keywords / liked are required.",
        f"email = {_value(email)}",
    ]
    if name:
        lines.append(f"name = {_value(name)}")
    if interests.strip():
        lines += [
            "",
            "# Free text: the main signal. Write it like you would describe your work to a "
            "colleague.",
            f"interests = {_text(interests)}",
        ]
    lines += [
        "",
        "# Words or phrases that matter; a table gives a weight (default 1),",
        '# e.g. { term = "RLHF", weight = 2.0 }.',
        f"keywords = {_value([k for k in keywords if k.strip()])}",
    ]
    if "max_papers" in settings:
        lines.append(f"max_papers = {_value(settings['max_papers'])}")
    lines.append("")
    timing = [k for k in ("timezone", "send_hour", "frequency", "weekday") if k in settings]
    if timing:
        lines.append("# When it arrives: the local hour in their timezone, daily or weekly.")
        lines += [f"{k} = {_value(settings[k])}" for k in timing]
    else:
        lines += [
            "# When it arrives (optional): the local hour in their timezone, daily or weekly.",
            '# timezone = "Europe/Paris"',
            "# send_hour = 7",
            '# frequency = "weekly"',
            '# weekday = "monday"',
        ]
    return "\n".join(lines) + "\n"


def _update(
    doc: TOMLDocument,
    *,
    name: str,
    interests: str,
    keywords: Sequence[str],
    settings: dict[str, Any],
) -> None:
    if name:
        doc["name"] = name
    if interests.strip():
        doc["interests"] = _text_item(interests)
    if keywords:
        doc["keywords"] = [k for k in keywords if k.strip()]
    for k, v in settings.items():
        doc[k] = v


def _free_path(directory: Path, slug: str) -> Path:
    path = directory / f"{slug}.toml"
    n = 2
    while path.exists():
        path = directory / f"{slug}-{n}.toml"
        n += 1
    return path


def _same_email(value: str, key: str) -> bool:
    try:
        return check_email(value.strip()).lower() == key
    except ValueError:
        return value.strip().lower() == key


def _clean(text: str) -> str:
    """Text fit for a TOML string: LF line ends, no control characters but tab."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c for c in text if c in "\t\n" or unicodedata.category(c) != "Cc")


def _value(value: Any) -> str:
    if isinstance(value, str):
        value = _clean(value).replace("\n", " ")
    return tomlkit.item(value).as_string()


def _text(text: str) -> str:
    """A multi-line basic string, opening and closing on lines of their own."""
    body = _clean(text).strip()
    if "\n" not in body and len(body) < 80:
        return _value(body)
    body = body.replace("\\", "\\\\").replace('"""', '""\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return f'"""\n{body}\n"""'


def _text_item(text: str) -> Item:
    item = tomlkit.parse(f"x = {_text(text)}\n").item("x")
    assert isinstance(item, Item)
    return item
