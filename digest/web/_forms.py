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
# A keyword that weighs more than 1, as the form shows and reads it: "ASR (weight 2)".
_WEIGHT = re.compile(r"\s*\(\s*weight\s+(\d+(?:\.\d+)?)\s*\)$", re.IGNORECASE)
# A subscriber file's defaults (``ProfileFile``): a setting the file leaves out stays out
# while the form keeps its default.
DEFAULTS: dict[str, Any] = {
    "name": "",
    "category_mode": "boost",
    "min_score": 0.0,
    "max_papers": 10,
    "timezone": "UTC",
    "frequency": "daily",
    "weekday": "monday",
    "active": True,
}


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


def keyword_lines(value: Any) -> str:
    """A file's keywords as the form shows them: one a line, a weight other than 1 after
    the term ("ASR (weight 2)")."""
    items = list(value.items()) if isinstance(value, dict) else value or []
    out = []
    for item in items:
        if isinstance(item, tuple):
            term, weight = item
        elif isinstance(item, dict):
            term, weight = item.get("term", ""), item.get("weight", 1.0)
        else:
            term, weight = item, 1.0
        out.append(f"{term} (weight {float(weight):g})" if float(weight) != 1.0 else str(term))
    return "\n".join(out)


def weighted_terms(text: str) -> tuple[list[str | dict[str, Any]], str]:
    """Keywords as typed: each a string, or ``{term, weight}`` when written with
    "(weight N)"; and an error, or ""."""
    out: list[str | dict[str, Any]] = []
    for term in terms(text):
        m = _WEIGHT.search(term)
        if m is None:
            out.append(term)
            continue
        weight, term = float(m.group(1)), term[: m.start()].strip()
        if not term:
            continue
        if not 0 < weight <= 10:
            return out, f"A keyword's weight goes from 0 to 10 ({term!r})."
        out.append(term if weight == 1 else {"term": term, "weight": weight})
    return out, ""


def changes(values: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Of a form's ``values``, those that change the file whose values are ``current``: a
    page saved as it was shown leaves the file as it was, byte for byte (a setting it
    leaves out stays out while the form keeps its default; keywords written as a table
    stay so while their weights are the same)."""
    out = {}
    for key, value in values.items():
        if key not in current:
            if value is None or value in ("", []) or value == DEFAULTS.get(key, ()):
                continue
        elif key == "keywords":
            if keyword_lines(current[key]) == keyword_lines(value):
                continue
        elif key == "categories" and isinstance(current[key], list):
            if sorted(map(str, current[key])) == sorted(value):  # the list's order, not theirs
                continue
        elif key == "interests" and isinstance(current[key], str):
            if clean_text(current[key], LIMITS["interests"]) == value:  # as the form shows it
                continue
        elif current[key] == value and type(current[key]) is type(value):
            continue
        out[key] = value
    return out


def profile_values(form: Any, *, email: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(values for the subscriber file, errors by field) from a submitted profile form."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    get = form.get
    values["name"] = clean_line(str(get("name", "")), LIMITS["name"])
    values["interests"] = clean_text(str(get("interests", "")), LIMITS["interests"])
    values["keywords"], problem = weighted_terms(str(get("keywords", "")))
    if problem:
        errors["keywords"] = problem
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
    mode = str(get("category_mode", "boost"))
    if mode not in ("boost", "restrict"):
        errors["category_mode"] = "Favour the categories, or keep only them."
        mode = "boost"
    values["category_mode"] = mode
    score = clean_line(str(get("min_score", "")), 10)
    try:
        values["min_score"] = float(score) if score else 0.0
        if not 0 <= values["min_score"] <= 20:
            raise ValueError(score)
    except ValueError:
        errors["min_score"] = "A number from 0 (keep anything above average) to 20."
        values["min_score"] = 0.0

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
