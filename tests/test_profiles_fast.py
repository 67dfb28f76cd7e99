"""The fast way of loading subscriber files (toml_rs, plain values without pydantic) gives
exactly what the checked way (tomllib, ``ProfileFile``) gives: the same values of the same
types, and the same error messages, line and column included."""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.errors import ProfileError
from digest.models import Profile
from digest.subscribers import load_profile, load_profiles
from digest.subscribers._files import _WS, _checked_profile, _plain_profile
from digest.validation import Strict, read_text, read_toml, read_toml_fast

from .conftest import DATA, ROOT

EVERY_TOML = sorted(
    {*ROOT.glob("demo/subscribers/**/*.toml"), *DATA.glob("**/*.toml"), *ROOT.glob("*.toml")}
    | {*ROOT.glob("demo/**/*.toml"), *ROOT.glob("digest/skeleton/*.toml")}
)


def outcome_of(load: Callable[..., object], *args: object) -> tuple[str, str]:
    """("ok", repr of the value) or ("error", the message): repr tells 2 from 2.0."""
    try:
        return ("ok", repr(load(*args)))
    except ProfileError as exc:
        return ("error", str(exc))


def checked(path: Path) -> Profile:
    """The way profiles were always loaded: Path.read_text, tomllib, pydantic."""
    return _checked_profile(path, read_toml(path, ProfileError))


def write(tmp_path: Path, text: str, name: str = "p.toml", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


# ---------------------------------------------------------------- reading the text


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'a = "x"\n',
        b'a = "x"\r\nb = """\r\nline\r\n"""\r\n',
        b'a = "x"\rb = 1\r',
        b"\r\r\n\n\r",
        b'\xef\xbb\xbfa = "bom"\n',
        'name = "Chlo\u00e9 \U0001f600"\n'.encode(),
        b"x" * 70_000 + b"\r\n" + b"y" * 70_000,  # more than one read
        b"a = 1\x00\n",
    ],
)
def test_text_read_as_path_read_text_reads_it(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(raw)
    assert read_text(path, ProfileError) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["missing", "directory", "bad utf-8", "bad utf-8 late"])
def test_unreadable_file_worded_as_before(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.toml"
    if kind == "directory":
        path.mkdir()
    elif kind == "bad utf-8":
        path.write_bytes(b'a = "\xff"\n')
    elif kind == "bad utf-8 late":
        path.write_bytes(b"a = 1\n" * 20_000 + b'b = "\xc3("\n')
    before = outcome_of(read_toml, path, ProfileError)
    assert before[0] == "error"
    assert outcome_of(read_toml_fast, path, ProfileError) == before
    assert outcome_of(load_profile, path) == outcome_of(checked, path)


# ---------------------------------------------------------------- parsing TOML

TRICKY_TOML = [
    # the shapes subscriber files hold
    'keywords = ["x", { term = "RLHF", weight = 2.0 }, {term="y",weight=10}]',
    "keywords = { \"message passing\" = 2.0, gnn = 1.5, 'lit' = 3 }",
    'interests = """\nLarge language models,\n  "reasoning" \\\n   and more.\n"""',
    "interests = '''\nraw \\n text ''' ",
    'name = "Zo\\u00eb \\U0001F600 \\"q\\" \\\\ \\t \\b \\f \\r \\n"',
    'name = "Chlo\u00e9 \u6f22\u5b57 \U0001f600"',
    "max_papers = 1_0\nmin_score = 0.25\nsend_hour = +7\nactive = false\nx = -0.0",
    "a = 1e400\nb = -inf\nc = nan\nd = 5e-324\ne = 1.7976931348623157e308\nf = 0.1",
    "a = 99999999999999999999999\nb = -9223372036854775809\nc = 0x1F\nd = 0o17\ne = 0b101",
    'authors = [\n  "A", # a comment\n  "B",\n]\n# trailing comment',
    "[table]\nx = 1\n[[list]]\ny = 2\n[[list]]\ny = 3\n[a.b]\nc = 1",
    "a.b.c = 1\na.b.d = 2\n'quoted key' = 3\n\"\" = 4",
    "d = 1979-05-27T07:32:00Z\nt = 07:32:00\nday = 1979-05-27\nlocal = 1979-05-27 07:32:00.5",
    'a = """a""""\nb = """"x""""\nc = \'\'\'\'\'x\'\'\'\'\'',
    # refused by TOML 1.0 (some are TOML 1.1, which tomllib does not read)
    'email = "a@example.org"\nemail = "b@example.org"',
    "[t]\nx = 1\n[t]\ny = 2",
    "a = {b = 1}\na.c = 2",
    "a = { x = 1, }",
    "a = { x = 1,\n y = 2 }",
    'a = "\\x41"',
    'a = "\\e"',
    "a = 07:32",
    "a = 1979-05-27T07:32Z",
    'a = "\\uD800"',
    'a = "\\U00110000"',
    'a = "bad \\a escape"',
    'a = "ctrl \x01"',
    'a = "del \x7f"',
    '\ufeffemail = "bom@example.org"',
    "interests = ",
    "a = 1 b = 2",
    "a = [1,,2]",
    "a = 01",
    "a = 1__0",
    "a = 00:00:60",
    "a = 1979-02-30",
    "a = True",
    "\u00e9 = 1",
]


@pytest.mark.parametrize("text", TRICKY_TOML)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_parser_agrees_with_tomllib(tmp_path: Path, text: str, newline: str) -> None:
    path = write(tmp_path, text, newline=newline)
    assert outcome_of(read_toml_fast, path, ProfileError) == outcome_of(
        read_toml, path, ProfileError
    )


def test_tomllib_still_refuses_what_toml_1_0_refuses(tmp_path: Path) -> None:
    path = write(tmp_path, 'email = "a@example.org"\ninterests = "x"\nemail = "b@example.org"')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == (
        f"{path}: invalid TOML: Cannot overwrite a value (at end of document); "
        "fix the syntax at that line"
    )


@pytest.mark.parametrize(
    "value",
    ["[" * 20_000 + "]" * 20_000, "{a=" * 20_000 + "1" + "}" * 20_000, "[" * 100 + "]" * 100],
    ids=["arrays 20,000 deep", "tables 20,000 deep", "arrays 100 deep"],
)
def test_deep_nesting_goes_to_tomllib(tmp_path: Path, value: str) -> None:
    """toml_rs would crash the process on these; tomllib runs out of recursion as before."""
    path = write(tmp_path, f'email = "a@example.org"\ninterests = "x"\nliked = {value}\n')
    if value.count("[") > 1000 or value.count("{") > 1000:
        with pytest.raises(RecursionError):
            read_toml(path, ProfileError)
        with pytest.raises(RecursionError):
            read_toml_fast(path, ProfileError)
    else:
        assert outcome_of(read_toml_fast, path, ProfileError) == outcome_of(
            read_toml, path, ProfileError
        )
        assert outcome_of(load_profile, path) == outcome_of(checked, path)


@pytest.mark.parametrize("path", EVERY_TOML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_toml_file_parses_the_same(path: Path) -> None:
    assert outcome_of(read_toml_fast, path, ProfileError) == outcome_of(
        read_toml, path, ProfileError
    )


def test_mutated_files_parse_the_same(tmp_path: Path) -> None:
    """Small random edits of subscriber files: whatever tomllib makes of each, the fast
    parser makes the same (or hands it to tomllib)."""
    rng = random.Random(20261127)
    bases = [p.read_text(encoding="utf-8") for p in EVERY_TOML] + TRICKY_TOML[:14]
    pieces = [
        *"\"'{}[],=.#\n\t \\0123456789abcdefxeEn+-_:TZ",
        *("\\x41", "\\e", '"""', "'''", "\\U0001F600", "\u00e9", "\x00", "\x7f", "\u00a0"),
        *("\ufeff", "\x1f", "\r\n", "\r", "inf", "nan", "true", "1979-05-27", "07:32", "[["),
    ]
    path = tmp_path / "m.toml"
    for _ in range(1500):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            roll = rng.random()
            if roll < 0.5:
                text = text[:i] + rng.choice(pieces) + text[i:]
            elif roll < 0.8:
                text = text[:i] + text[i + 1 :]
            else:
                j = rng.randrange(len(text) + 1)
                text = text[:i] + text[min(i, j) : max(i, j)] + text[i:]
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        expected = outcome_of(read_toml, path, ProfileError)
        assert outcome_of(read_toml_fast, path, ProfileError) == expected, text


# ---------------------------------------------------------------- building the profile


def test_strip_is_pydantics() -> None:
    class One(Strict):
        x: str

    for code in range(0x3100):
        c = chr(code)
        assert One(x=f"{c}a{c}").x == f"{c}a{c}".strip(_WS), hex(code)


# (good values, values pydantic coerces, refuses or that take the checked way)
EMAILS = (
    ["a@example.org", "  Mixed.Case+tag@Example.ORG \n", "\u00fcser@example.org"],
    ["a@b\u00fccher.example", "not an address", "a@b", "", "a@example.org\r\nBcc: x@evil.org"],
)
TEXTS = [
    "",
    "x",
    "   ",
    "Zo\u00eb \U0001f600",
    "  padded\t",
    "\u3000wide\u3000",
    "\x1cctl\x1c",
    "\u00a0nbsp\u00a0",
    'say "hi" \\ ok',
    "line one\nline two\n",
    '"a phrase"',
]
GOOD_NUMBERS = [0, 1, 2, 5, 10, 23, 0.0, 0.5, 2.0, 10.0, -0.0, 1e-9]
ODD = [24, 100, 101, -1, 10.5, True, False, math.inf, -math.inf, math.nan, 2**60, 7.0, "5", ["x"]]
FIELDS: dict[str, tuple[list[object], list[object]]] = {
    "name": (TEXTS, [1]),
    "interests": (TEXTS, [["x"]]),
    "authors": ([[], ["Yann LeCun", " ", ""], [" B\u3000"]], [["A", 1], "A"]),
    "categories": ([["cs.LG"], ["cs.LG", ""]], [[["cs.CL"]]]),
    "exclude": ([["survey", "cs.CR"], [""], ["\x1c"]], [[2]]),
    "liked": ([["2401.00001"], [""], [], ["  x  "]], [[1.5]]),
    "disliked": ([["2401.00002"], [""], [], [" y "]], [[2], "2401.00002"]),
    "category_mode": (["boost", "restrict"], [" boost", "other", 1]),
    "max_papers": ([1, 5, 10, 100], [0, *ODD]),
    "min_score": ([0, 0.0, -0.0, 0.5, 3, math.inf], [-0.1, -math.inf, *ODD]),
    "send_hour": ([0, 7, 23], ODD),
    "timezone": (["UTC", "Europe/Paris", " Europe/Paris "], ["Mars/Base", "", 5]),
    "frequency": (["daily", "weekly"], ["hourly", ""]),
    "weekday": (["fri", "Friday", " SUN "], ["xx", "", 3]),
    "active": ([True, False], [1, "yes"]),
    "liked_file": ([], ["", "  ", "liked.bib", "missing.bib"]),
    "disliked_file": ([], ["", "liked.bib", "missing.bib"]),
    "interest": ([], ["typo"]),
}


def keywords(rng: random.Random, bad: float) -> object:
    def pick(good: list[object], odd: list[object]) -> object:
        return rng.choice(odd if rng.random() < bad else good)

    if rng.random() < 0.3:
        terms = [*TEXTS, "gnn"]
        return {rng.choice(terms): pick(GOOD_NUMBERS, ODD) for _ in range(rng.randint(0, 3))}
    items: list[object] = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.5:
            items.append(rng.choice(TEXTS))
        elif kind < 0.9:
            table: dict[str, object] = {"term": pick(["RLHF", "x y", ' "q" '], [*TEXTS, 3])}
            if rng.random() < 0.7:
                table["weight"] = pick([1, 2, 0.5, 10, 2.0, 1e-9], [0, -1, *ODD])
            if rng.random() < bad / 3:
                table["wieght"] = 1
            if rng.random() < bad / 3:
                del table["term"]
            items.append(table)
        else:
            items.append(rng.choice(ODD))
    return items


def toml_value(value: object, rng: random.Random) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        plain = not any(c in value for c in "'\\\"\n") and value.isprintable()
        if plain and rng.random() < 0.3:
            return f"'{value}'"
        if "\n" in value and '"""' not in value and rng.random() < 0.5:
            return '"""\n' + value.replace("\\", "\\\\").replace('"', '\\"') + '"""'
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v, rng) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {toml_value(v, rng)}" for k, v in value.items())
        return "{" + inner + "}"
    raise AssertionError(value)


def random_profile(rng: random.Random) -> str:
    bad = rng.choice([0.0, 0.0, 0.03, 0.3])  # how likely each value is an odd one
    lines = []
    if rng.random() < 0.99:
        lines.append(f"email = {toml_value(rng.choice(EMAILS[rng.random() < bad]), rng)}")
    for key, (good, odd) in FIELDS.items():
        if rng.random() < 0.4:
            pool = odd if not good or (rng.random() < bad) else good
            if pool and (good or rng.random() < bad):
                lines.append(f"{key} = {toml_value(rng.choice(pool), rng)}")
    if rng.random() < 0.6:
        lines.append(f"keywords = {toml_value(keywords(rng, bad), rng)}")
    rng.shuffle(lines)
    if rng.random() < bad / 5:
        lines.append("[extra]\nx = 1")
    return "\n".join(lines) + "\n"


ONE_VALUE = [
    (key, value)
    for key, (good, odd) in FIELDS.items()
    for value in [*good, *odd]
    if not isinstance(value, float) or not math.isnan(value)
] + [
    ("keywords", value)
    for value in [[], {}, [""], [" "], ['"x"'], {" a ": 1}, {"a": True}, {"a": 1, " a": 2, "b": 3}]
]
ONE_VALUE += [
    ("keywords", [{"term": term, "weight": weight}])
    for term in ["x", " x ", "", " ", "\x1c", 3]
    for weight in [*GOOD_NUMBERS, *ODD]
    if not isinstance(weight, float) or not math.isnan(weight)
] + [("keywords", [{"term": "x", "weight": math.nan}]), ("min_score", math.nan)]


@pytest.mark.parametrize(("key", "value"), ONE_VALUE, ids=repr)
def test_each_value_loads_the_same(tmp_path: Path, key: str, value: object) -> None:
    rng = random.Random(1)
    for base in ('email = "a@example.org"\ninterests = "x"\n', 'email = "a@example.org"\n'):
        path = write(tmp_path, f"{base}{key} = {toml_value(value, rng)}\n")
        assert outcome_of(load_profile, path) == outcome_of(checked, path)


def test_random_profiles_load_the_same(tmp_path: Path) -> None:
    (tmp_path / "liked.bib").write_text("@article{a, title = {T}, abstract = {A}}\n")
    rng = random.Random(7)
    fast = failures = 0
    for i in range(2500):
        text = random_profile(rng)
        path = write(tmp_path, text, f"s{i}.toml", rng.choice(["\n", "\r\n"]))
        expected = outcome_of(checked, path)
        assert outcome_of(load_profile, path) == expected, text
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue
        quick = _plain_profile(path, data)
        if quick is not None:
            assert ("ok", repr(quick)) == expected, text
            fast += 1
        failures += expected[0] == "error"
    # both sides are exercised: the fast way for most good files, pydantic for the rest
    assert fast > 800, fast
    assert failures > 400, failures


def test_bundled_and_plain_profiles_take_the_fast_way(tmp_path: Path) -> None:
    for path in sorted((ROOT / "demo" / "subscribers").glob("*.toml")):
        data = read_toml_fast(path, ProfileError)
        assert _plain_profile(path, data) == checked(path)
        assert repr(load_profile(path)) == repr(checked(path))
    path = write(
        tmp_path,
        'email = "a@example.org"\ninterests = "x"\nmax_papers = 5\nmin_score = 1\n'
        'keywords = ["x", { term = "y", weight = 2 }]\ntimezone = "Europe/Paris"\n'
        'weekday = "Fri"\nfrequency = "weekly"\nsend_hour = 8\nactive = false\n',
    )
    quick = _plain_profile(path, read_toml_fast(path, ProfileError))
    assert quick is not None
    assert repr(quick) == repr(checked(path))
    assert quick.min_score == 1.0 and type(quick.min_score) is float
    assert type(quick.keywords[1].weight) is float


def test_folder_loads_the_same_as_file_by_file(tmp_path: Path) -> None:
    rng = random.Random(11)
    emails = ["a@example.org", "A@example.org", "b@example.org", "c@example.org"]
    for i in range(300):
        text = random_profile(rng)
        if "email =" in text:  # mostly addresses of their own, some used twice
            email = rng.choice(emails) if rng.random() < 0.15 else f"u{i}@example.org"
            text = f"email = {json.dumps(email)}\n" + "\n".join(
                line for line in text.splitlines() if not line.startswith("email =")
            )
        write(tmp_path, text, f"s{i:03d}.toml")
    expected_profiles, expected_errors = [], []
    first: dict[str, Path] = {}
    for path in sorted(tmp_path.glob("*.toml")):
        try:
            profile = checked(path)
        except ProfileError as exc:
            expected_errors.append(str(exc))
            continue
        other = first.setdefault(profile.email.lower(), path)
        if other != path:
            expected_errors.append(
                f"{path}: email: {profile.email} is already used by {other}; this file is "
                "skipped: remove it, or change its email"
            )
            continue
        expected_profiles.append(repr(profile))
    profiles, errors = load_profiles(tmp_path)
    assert [repr(p) for p in profiles] == expected_profiles
    assert [str(e) for e in errors] == expected_errors
    assert len(expected_profiles) > 20 and len(expected_errors) > 20
