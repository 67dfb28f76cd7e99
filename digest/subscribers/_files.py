"""``subscribers/*.toml`` into ``Profile`` values."""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, field_validator, model_validator

from ..config import Config, check_timezone
from ..errors import ConfigError, ProfileError, UsageError
from ..models import Keyword, Profile
from ..validation import Strict, load_model, read_toml_fast
from ._limits import within_limits

log = logging.getLogger(__name__)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class WeightedKeyword(Strict):
    term: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, le=10)


class ProfileFile(Strict):
    email: str
    name: str = ""
    interests: str = ""
    keywords: list[str | WeightedKeyword] | dict[str, float] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    category_mode: Literal["boost", "restrict"] = "boost"
    exclude: list[str] = Field(default_factory=list)
    liked: list[str] = Field(default_factory=list)
    liked_file: str = ""
    disliked: list[str] = Field(default_factory=list)  # down votes kept in the file
    disliked_file: str = ""
    max_papers: int = Field(default=10, ge=1, le=100)
    min_score: float = Field(default=0.0, ge=0)
    timezone: str = "UTC"
    send_hour: int | None = Field(default=None, ge=0, le=23)
    frequency: Literal["daily", "weekly"] = "daily"
    weekday: str = "monday"
    active: bool = True

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return check_email(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        return check_weekday(value)

    @model_validator(mode="after")
    def _has_signal(self) -> ProfileFile:
        if not (self.interests or self.keywords or self.liked or self.liked_file):
            raise ValueError(
                "interests: missing value; give at least one of interests, keywords or liked"
            )
        return self

    def weighted_keywords(self) -> tuple[Keyword, ...]:
        if isinstance(self.keywords, dict):
            return tuple(Keyword(t.strip().strip('"'), float(w)) for t, w in self.keywords.items())
        out = []
        for k in self.keywords:
            if isinstance(k, WeightedKeyword):
                out.append(Keyword(k.term.strip('"'), k.weight))
            elif k.strip().strip('"'):
                out.append(Keyword(k.strip().strip('"')))
        return tuple(out)


def check_weekday(value: str) -> str:
    day = value.strip().lower()
    matches = [d for d in WEEKDAYS if d.startswith(day[:3])] if len(day) >= 3 else []
    if not matches:
        raise ValueError(f"unknown weekday {value!r}; use one of {', '.join(WEEKDAYS)}")
    return matches[0]


# An RFC 5322 dot-atom local part in ASCII: email_validator accepts it unchanged.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def check_email(value: str) -> str:
    """A syntactically valid address (no DNS), or ValueError. Rejects CR/LF outright.

    The common case (an ASCII dot-atom before the "@") checks the domain once per run and
    gives what email_validator gives for the whole address; anything else goes through
    email_validator in full."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("email contains a line break; one address only")
    local, at, domain = value.rpartition("@")
    if at and len(local) <= 64 and len(value) <= 200 and _DOT_ATOM.fullmatch(local):
        normalized = _domain(domain)
        if normalized:
            return f"{local}@{normalized}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {value!r}: {exc}") from exc
    return result.normalized


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """The domain as email_validator normalizes it, or "" when it refuses it."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return ""


def subscribers_missing(cfg: Config) -> str:
    """The error for a config whose subscribers folder does not exist."""
    folder = cfg.subscribers_path
    return (
        f"{cfg.path}: subscribers_dir: {folder} is not a folder; create it "
        f"(mkdir -p {folder}) or fix subscribers_dir"
    )


def load_profile(path: Path) -> Profile:
    data = read_toml_fast(path, ProfileError)
    profile = _plain_profile(path, data)
    return within_limits(_checked_profile(path, data) if profile is None else profile)


def _checked_profile(path: Path, data: dict[str, Any]) -> Profile:
    """The profile ``ProfileFile`` makes of ``data``, or its error as a ``ProfileError``."""
    spec = load_model(path, data, ProfileFile, ProfileError)
    liked_file = None
    liked_texts: tuple[tuple[str, str], ...] = ()
    if spec.liked_file:
        liked_file = Path(spec.liked_file).expanduser()
        if not liked_file.is_absolute():
            liked_file = path.parent / liked_file
        liked_texts = read_liked_file(path, liked_file)
    disliked_file = None
    disliked_texts: tuple[tuple[str, str], ...] = ()
    if spec.disliked_file:
        disliked_file = Path(spec.disliked_file).expanduser()
        if not disliked_file.is_absolute():
            disliked_file = path.parent / disliked_file
        disliked_texts = read_liked_file(path, disliked_file, "disliked_file")
    return Profile(
        email=spec.email,
        name=spec.name,
        interests=spec.interests,
        keywords=spec.weighted_keywords(),
        authors=tuple(a for a in spec.authors if a),
        categories=tuple(c for c in spec.categories if c),
        category_mode=spec.category_mode,
        exclude=tuple(e for e in spec.exclude if e),
        liked=tuple(spec.liked),
        liked_file=liked_file,
        liked_texts=liked_texts,
        disliked=tuple(spec.disliked),
        disliked_file=disliked_file,
        disliked_texts=disliked_texts,
        max_papers=spec.max_papers,
        min_score=spec.min_score,
        timezone=spec.timezone,
        send_hour=spec.send_hour,
        frequency=spec.frequency,
        weekday=spec.weekday,
        active=spec.active,
        path=path,
    )


# What pydantic's str_strip_whitespace strips: Python's whitespace but U+001C..U+001F.
_WS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_KEYS = frozenset(ProfileFile.model_fields) - {"liked_file", "disliked_file"}
_TERM_KEYS = frozenset(("term", "weight"))
_EXACT = 2**53  # integers a float holds exactly


def _plain_profile(path: Path, data: dict[str, Any]) -> Profile | None:
    """The profile ``_checked_profile`` gives for ``data`` when every value is of the plain,
    valid kind subscriber files hold, at a fifth of the cost; None for anything else (an
    unknown key, a value pydantic would coerce or refuse, a BibTeX file to read), which then
    goes through ``ProfileFile`` so that every error is worded as before."""
    if not _KEYS.issuperset(data):
        return None
    get = data.get
    email = get("email")
    name = get("name", "")
    interests = get("interests", "")
    if type(email) is not str or type(name) is not str or type(interests) is not str:
        return None
    try:
        email = check_email(email.strip(_WS))
    except ValueError:
        return None
    interests = interests.strip(_WS)
    lists: list[tuple[str, ...]] = []
    for key in ("authors", "categories", "exclude", "liked", "disliked"):
        items = get(key)
        if items is None:
            lists.append(())
            continue
        if type(items) is not list:
            return None
        values = []
        for item in items:
            if type(item) is not str:
                return None
            values.append(item.strip(_WS))
        lists.append(tuple(values if key in ("liked", "disliked") else [v for v in values if v]))
    raw_keywords = get("keywords")
    keywords = () if raw_keywords is None else _plain_keywords(raw_keywords)
    if keywords is None or not (interests or raw_keywords or lists[3]):
        return None
    max_papers = get("max_papers", 10)
    min_score = get("min_score", 0.0)
    send_hour = get("send_hour")
    category_mode = get("category_mode", "boost")
    frequency = get("frequency", "daily")
    active = get("active", True)
    if not (
        type(max_papers) is int
        and 1 <= max_papers <= 100
        and (send_hour is None or (type(send_hour) is int and 0 <= send_hour <= 23))
        and category_mode in ("boost", "restrict")
        and frequency in ("daily", "weekly")
        and type(active) is bool
    ):
        return None
    min_score = _number(min_score)
    if min_score is None or not min_score >= 0:
        return None
    timezone = get("timezone", "UTC")
    weekday = get("weekday", "monday")
    if "timezone" in data or "weekday" in data:
        if type(timezone) is not str or type(weekday) is not str:
            return None
        try:
            if "timezone" in data:
                timezone = check_timezone(timezone.strip(_WS))
            if "weekday" in data:
                weekday = check_weekday(weekday.strip(_WS))
        except Exception:  # pydantic words it
            return None
    return Profile(
        email=email,
        name=name.strip(_WS),
        interests=interests,
        keywords=keywords,
        authors=lists[0],
        categories=lists[1],
        category_mode=category_mode,
        exclude=lists[2],
        liked=lists[3],
        disliked=lists[4],
        max_papers=max_papers,
        min_score=min_score,
        timezone=timezone,
        send_hour=send_hour,
        frequency=frequency,
        weekday=weekday,
        active=active,
        path=path,
    )


def _plain_keywords(value: object) -> tuple[Keyword, ...] | None:
    """``ProfileFile.weighted_keywords`` for plain valid keywords, else None."""
    if type(value) is dict:
        weights: dict[str, float] = {}  # keys stripped as pydantic strips them: " a" joins "a"
        for term, weight in value.items():
            w = _number(weight)
            if w is None:
                return None
            weights[term.strip(_WS)] = w
        return tuple(Keyword(t.strip().strip('"'), w) for t, w in weights.items())
    out = []
    if type(value) is not list:
        return None
    for item in value:
        if type(item) is str:
            term = item.strip(_WS).strip().strip('"')
            if term:
                out.append(Keyword(term))
        elif type(item) is dict and "term" in item and _TERM_KEYS.issuperset(item):
            term = item["term"]
            w = _number(item.get("weight", 1.0))
            if type(term) is not str or w is None or not 0 < w <= 10:
                return None
            term = term.strip(_WS)
            if not term:
                return None
            out.append(Keyword(term.strip('"'), w))
        else:
            return None
    return tuple(out)


def _number(value: object) -> float | None:
    """A TOML float, or an integer a float holds exactly, as pydantic's float gives it."""
    if type(value) is float:
        return value
    if type(value) is int and -_EXACT <= value <= _EXACT:
        return float(value)
    return None


def read_liked_file(
    profile_path: Path, liked_file: Path, key: str = "liked_file"
) -> tuple[tuple[str, str], ...]:
    """(title, abstract) pairs from a BibTeX export (``key``: the setting that names it)."""
    from ._bibtex import BibtexError, read_bibtex

    try:
        return tuple(read_bibtex(liked_file))
    except FileNotFoundError as exc:
        raise ProfileError(
            f"{profile_path}: {key}: {liked_file} not found; fix the path (relative to "
            "the subscriber file)"
        ) from exc
    except BibtexError as exc:
        raise ProfileError(f"{profile_path}: {key}: {exc}") from exc


def profile_files(directory: Path) -> list[Path]:
    return [directory / name for name in profile_names(directory)]


def profile_names(directory: Path) -> list[str]:
    """The subscriber file names in ``directory`` (``*.toml``, not hidden), sorted."""
    with os.scandir(directory) as entries:
        return sorted(
            e.name for e in entries if e.name.endswith(".toml") and not e.name.startswith(".")
        )


class Ledger(Protocol):
    """What the database knows of subscriber files (``digest.store.Store`` is one)."""

    def subscriber_files_between(self, first: str, last: str) -> dict[str, str]: ...

    def subscriber_files(self, emails: Sequence[str]) -> dict[str, str]: ...

    def remember_subscriber_files(self, pairs: Sequence[tuple[str, str]]) -> None: ...


def iter_profiles(
    directory: Path,
    on_error: Callable[[ProfileError], None],
    ledger: Ledger | None = None,
    *,
    remember: bool = True,
) -> Iterator[Profile]:
    """Every subscriber file in ``directory``, loaded one at a time as the caller asks, so
    a folder of 100,000 files is never held in memory; a broken file (or a second file
    with an address already used) goes to ``on_error`` and the others still come.

    When two files hold one address, the file ``ledger`` (the database) knows for that
    address keeps it and the other is reported, whatever their names; otherwise the first
    by name keeps it. With ``remember``, the ledger learns each address's file."""
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: subscribers folder not found; create it (mkdir -p {directory}) or "
            "fix subscribers_dir in the config"
        )
    return _iter_profiles(directory, profile_names(directory), on_error, ledger, remember)


BATCH = 500  # files read before asking the ledger about their addresses


def _iter_profiles(
    directory: Path,
    names: list[str],
    on_error: Callable[[ProfileError], None],
    ledger: Ledger | None,
    remember: bool,
) -> Iterator[Profile]:
    # The hash of each lower-cased address -> the index of the file that has it: about
    # 100 bytes a subscriber. A hash shared by two addresses (about one chance in 10^9
    # among 100,000) is told apart by reading that file again.
    seen: dict[int, int] = {}
    size = BATCH if ledger is not None else 1  # without a ledger, no file is read ahead
    for start in range(0, len(names), size):
        loaded: list[tuple[int, Profile]] = []
        for index in range(start, min(start + size, len(names))):
            try:
                loaded.append((index, load_profile(directory / names[index])))
            except ProfileError as exc:
                on_error(exc)
        last: dict[str, str] = {}  # file -> the address it held last time
        known: dict[str, str] = {}  # address -> its file, for files holding a new address
        if ledger is not None and loaded:
            # Most files hold the address they held last time: one range query says so.
            # The others (new files, changed addresses) are looked up by address.
            last = ledger.subscriber_files_between(names[loaded[0][0]], names[loaded[-1][0]])
            unsure = [p.email for i, p in loaded if last.get(names[i]) != p.email.lower()]
            known = ledger.subscriber_files(unsure) if unsure else {}
        learn: list[tuple[str, str]] = []
        for index, profile in loaded:
            name = names[index]
            key = profile.email.lower()
            owner = seen.setdefault(hash(key), index)
            if owner != index:  # a second file with an address already taken
                first = names[owner]
                if _email_of(directory / first) == key:
                    held = ledger is not None and ledger.subscriber_files([key]).get(key) == first
                    on_error(_taken(directory / name, profile.email, directory / first, held))
                    continue
            elif ledger is not None and last.get(name) != key:
                other = known.get(key)
                later = _later_owner(directory, names, index, other, key) if other else None
                if later is not None:  # the file known for it comes later: it keeps it
                    seen[hash(key)] = later
                    on_error(_taken(directory / name, profile.email, directory / str(other), True))
                    continue
                learn.append((key, name))  # a new address, or this file is new for it
            yield profile
        if ledger is not None and remember and learn:
            ledger.remember_subscriber_files(learn)


def _later_owner(
    directory: Path, names: list[str], index: int, other: str | None, key: str
) -> int | None:
    """The index of file ``other`` when it comes after ``index`` and still holds ``key``."""
    if not other:
        return None
    at = bisect.bisect_left(names, other)
    if at <= index or at >= len(names) or names[at] != other:
        return None
    return at if _email_of(directory / other) == key else None


def _taken(path: Path, email: str, other: Path, known: bool = False) -> ProfileError:
    whose = " (the file the database knows for it)" if known else ""
    return ProfileError(
        f"{path}: email: {email} is already used by {other}{whose}; this file is skipped: "
        "remove it, or change its email"
    )


def _email_of(path: Path) -> str:
    try:
        return load_profile(path).email.lower()
    except ProfileError:  # changed since it was read
        return ""


def load_profiles(
    directory: Path, ledger: Ledger | None = None, *, remember: bool = False
) -> tuple[list[Profile], list[ProfileError]]:
    """Every subscriber file in ``directory``; broken ones are returned as errors, not raised."""
    errors: list[ProfileError] = []
    profiles = list(iter_profiles(directory, errors.append, ledger, remember=remember))
    return profiles, errors


def find_profile(directory: Path, name: str) -> Profile:
    """A profile by file path, file name (with or without ``.toml``), email, or, when only
    one subscriber fits: the part of the address before the "@", the first word of the
    file name, or their name ('chloe' finds chloe-speech-audio.toml, chloe@example.org,
    name = "Chloé")."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.exists():
        return load_profile(candidate)
    if candidate.suffix == ".toml" and (directory / candidate.name).exists():
        return load_profile(directory / candidate.name)
    stem = directory / f"{name}.toml"
    if stem.exists():
        return load_profile(stem)
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: subscribers folder not found; create it or fix subscribers_dir"
        )
    profiles, _ = load_profiles(directory)
    want = name.strip().lower()
    for p in profiles:
        if p.email.lower() == want:
            return p
    folded = _fold(want)
    fits = [
        p
        for p in profiles
        if folded
        and folded
        in (
            _fold(p.email.rpartition("@")[0].lower()),
            _fold(p.slug.split("-")[0]),
            _fold(p.name.lower()),
            _fold(p.name.lower().split(" ")[0]) if p.name else "",
        )
    ]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise UsageError(
            f"{name!r} fits {len(fits)} subscribers ("
            + ", ".join(f"{p.email} in {p.path.name if p.path else '?'}" for p in fits[:5])
            + "); give the file name or the email"
        )
    raise UsageError(
        f"no subscriber {name!r} in {directory}; give a file, its name or an email "
        "(digest subscribers lists them)"
    )


def _fold(text: str) -> str:
    """Lower case without accents: 'Chloé' -> 'chloe'."""
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def profile_of(data: dict[str, Any], where: Path) -> Profile:
    """The profile a subscriber file holding ``data`` would give (the same schema and
    errors as ``digest check``; ``where`` names it in errors and anchors ``liked_file``)."""
    return _checked_profile(where, data)
