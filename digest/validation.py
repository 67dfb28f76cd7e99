"""Turn TOML files into validated models, with one-line errors naming file, key and fix."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import toml_rs
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import DigestError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for file schemas: unknown keys are errors, and a value must be of its key's
    type as TOML writes it (``port = "2526"`` is text, not a number: refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)


def read_toml(path: Path, error: type[DigestError]) -> dict[str, Any]:
    return _parse(path, _read(path, error), error)


def read_toml_fast(path: Path, error: type[DigestError]) -> dict[str, Any]:
    """What ``read_toml`` gives, from a compiled TOML 1.0 parser (about ten times cheaper),
    with errors worded exactly as before: a file that parser refuses goes to tomllib, which
    refuses it with the line and column (or takes it)."""
    text = read_text(path, error)
    data = None
    # tomllib refuses a byte order mark (toml_rs skips it), and arrays or inline tables
    # nested a few hundred deep (toml_rs crashes the process at a few thousand): those,
    # and any file with many brackets, are left to tomllib.
    if text[:1] != "\ufeff" and text.count("[") + text.count("{") <= _BRACKETS:
        try:
            data = toml_rs.loads(text, toml_version="1.0.0")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # refused, a date it cannot hold, or a panic in the parser
            data = None  # (pyo3's PanicException is a BaseException): tomllib decides
    return _parse(path, text, error) if data is None else data


def loads_fast(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, from the compiled parser where it reads the text the same
    way (see ``read_toml_fast``); raises ``tomllib.TOMLDecodeError`` as tomllib does."""
    if text[:1] != "\ufeff" and text.count("[") + text.count("{") <= _BRACKETS:
        try:
            data: dict[str, Any] = toml_rs.loads(text, toml_version="1.0.0")
            return data
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # refused, or a panic: tomllib decides
            pass
    return tomllib.loads(text)


def read_text(path: Path, error: type[DigestError]) -> str:
    """The text of ``path`` exactly as ``path.read_text(encoding="utf-8")`` gives it (a CR LF
    pair or a lone CR read as LF), with fewer system calls and objects; on any failure the
    file is read again that way, so the error is worded as before."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, _CHUNK)
            if data:
                parts = [data]
                while chunk := os.read(fd, _CHUNK):
                    parts.append(chunk)
                if len(parts) > 1:
                    data = b"".join(parts)
        finally:
            os.close(fd)
        text = data.decode("utf-8")
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return _read(path, error)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


_CHUNK = 1 << 16
_BRACKETS = 128  # nested no deeper than this, which tomllib reads too


def _read(path: Path, error: type[DigestError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{path}: file not found; create it or pass --config PATH") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc


def _parse(path: Path, text: str, error: type[DigestError]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}; fix the syntax at that line") from exc


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The nested model class that holds the key at ``loc`` (to suggest spellings)."""
    current: Any = model
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = current.model_fields.get(item) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            current = ann
        elif args:
            sub = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if not sub:
                return None
            current = sub[0]
        else:
            return None
    return current if isinstance(current, type) else None


def describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``exc`` as "key: problem; fix"."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = _key_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc)
        known = list(holder.model_fields) if holder is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"{key}: unknown key; {hint}"
    if kind == "missing":
        return f"{key}: missing value; add it (see the annotated example config.toml)"
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    if kind in _TYPES and not _may_be_secret(loc):
        return f"{key}: must be {_TYPES[kind]} (got {given!r}){_type_fix(loc, kind, given)}"
    if kind in _TYPES:
        return f"{key}: must be {_TYPES[kind]}"
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
    if _may_be_secret(loc):
        shown = ""  # a secret pasted in the wrong place must not reach a log
    return f"{key}: {msg}{shown}"


def _may_be_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether the value at ``loc`` may be a secret: a key naming one (``password_env``,
    ``secret_env``, anything with "password" or "secret" in its name), or ``database``
    (a URL may hold a password)."""
    name = str(loc[-1]).lower() if loc else ""
    if loc == ("database",):
        return True
    return name.endswith("_env") or "password" in name or "secret" in name


_TYPES = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text in double quotes",
}


def _type_fix(loc: tuple[int | str, ...], kind: str, given: object) -> str:
    """How to write the value as its type: a number in quotes without them, and so on."""
    name = next((str(x) for x in reversed(loc) if isinstance(x, str)), "key")
    if isinstance(given, str) and kind != "string_type":
        text = given.strip()
        fits = {
            "int_type": re.fullmatch(r"[+-]?\d[\d_]*", text),
            "float_type": re.fullmatch(r"[+-]?\d[\d_]*(\.\d+)?([eE][+-]?\d+)?", text),
            "bool_type": text in ("true", "false"),
        }[kind]
        if fits:
            return f"; write it without quotes: {name} = {text}"
    if kind == "string_type" and isinstance(given, int | float | bool):
        shown = str(given).lower() if isinstance(given, bool) else str(given)
        return f'; write it in quotes: {name} = "{shown}"'
    return ""


def load_model(path: Path, data: dict[str, Any], model: type[M], error: type[DigestError]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: {describe(exc, model)}") from exc
