"""The profile form (sign-up and preferences): what a visitor typed, bounded and cleaned,
into the values of a subscriber file, checked by the same schema as ``digest check``."""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from markupsafe import Markup, escape

from ..errors import ProfileError
from ..subscribers import WEEKDAYS, profile_of

LIMITS = {"name": 100, "interests": 4000, "term": 120}
MAX_TERMS = 50


@lru_cache(maxsize=1)
def categories() -> dict[str, str]:
    """arXiv's categories, code -> name (from arXiv's own taxonomy page)."""
    text = resources.files(__package__).joinpath("categories.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _category_items() -> tuple[tuple[str, str], ...]:
    return tuple((code, str(escape(f"{code} · {name}"))) for code, name in categories().items())


def category_options(selected: Any) -> Markup:
    """The categories' <option>s, ``selected`` ones marked: built once, joined per page (a
    template loop over 155 of them is most of a preferences page's cost)."""
    picked = set(selected or ())
    return Markup(
        "".join(
            f'<option value="{code}"{" selected" if code in picked else ""}>{label}</option>\n'
            for code, label in _category_items()
        )
    )


@lru_cache(maxsize=1)
def timezone_list() -> Markup:
    """The time zones' <option>s for the datalist, made once."""
    return Markup("".join(f'<option value="{escape(z)}">' for z in timezones()))


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))


def clean_line(text: str, limit: int) -> str:
    """One line of text: no control or format characters (bidi overrides included),
    whitespace collapsed, at most ``limit`` characters."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return " ".join(kept.split())[:limit]


def clean_text(text: str, limit: int) -> str:
    """Free text: lines kept, control characters dropped, at most ``limit`` characters."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [clean_line(line, limit) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()[:limit]


def terms(text: str, *, commas: bool = True) -> list[str]:
    """Keywords, authors or exclusions: one per line, or separated by ';' (or ',' where
    ``commas``: not for authors, who may be written "Last, First")."""
    parts = re.split(r"[\n;,]" if commas else r"[\n;]", text.replace("\r", "\n"))
    out: list[str] = []
    for part in parts:
        term = clean_line(part, LIMITS["term"])
        if term and term not in out:
            out.append(term)
    return out[:MAX_TERMS]


def profile_values(form: Any, *, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(values for the subscriber file, errors by field) from a submitted profile form."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    get = form.get
    values["name"] = clean_line(str(get("name", "")), LIMITS["name"])
    values["interests"] = clean_text(str(get("interests", "")), LIMITS["interests"])
    values["keywords"] = terms(str(get("keywords", "")))
    values["authors"] = terms(str(get("authors", "")), commas=False)
    values["exclude"] = terms(str(get("exclude", "")))
    known = categories()
    picked = [str(c) for c in form.getlist("categories")] if hasattr(form, "getlist") else []
    values["categories"] = [c for c in dict.fromkeys(picked) if c in known][:MAX_TERMS]
    tz = clean_line(str(get("timezone", "") or "UTC"), 64)
    if tz != "UTC" and tz not in timezones():
        errors["timezone"] = "Pick a time zone from the list, like Europe/Paris."
    values["timezone"] = tz
    hour = str(get("send_hour", "")).strip()
    if hour == "":
        values["send_hour"] = None
    elif hour.isdigit() and 0 <= int(hour) <= 23:
        values["send_hour"] = int(hour)
    else:
        errors["send_hour"] = "Pick an hour from 0 to 23."
    frequency = str(get("frequency", "daily"))
    if frequency not in ("daily", "weekly"):
        errors["frequency"] = "Daily or weekly."
        frequency = "daily"
    values["frequency"] = frequency
    weekday = str(get("weekday", "monday")).lower()
    if weekday not in WEEKDAYS:
        errors["weekday"] = "Pick a day of the week."
        weekday = "monday"
    values["weekday"] = weekday
    papers = str(get("max_papers", "10")).strip()
    if papers.isdigit() and 1 <= int(papers) <= 100:
        values["max_papers"] = int(papers)
    else:
        errors["max_papers"] = "From 1 to 100 papers."
    if not (values["interests"] or values["keywords"]):
        errors["interests"] = "Say what you want to read about, or give a few keywords."
    if not errors:
        try:
            profile_of(file_data(email, values), Path("web-form.toml"))
        except ProfileError as exc:
            errors["form"] = str(exc).replace("web-form.toml: ", "")
    return values, errors


def file_data(email: str, values: dict[str, Any]) -> dict[str, Any]:
    """What a subscriber file with these values holds (empty values left out)."""
    data = {"email": email}
    for key, value in values.items():
        if value in (None, "", []):
            continue
        data[key] = value
    return data
