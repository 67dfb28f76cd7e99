from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import ProfileError, UsageError
from digest.models import Keyword
from digest.store import Store
from digest.subscribers import _files as files
from digest.subscribers import find_profile, iter_profiles, load_profile, load_profiles

from .conftest import ROOT, write_subscriber


def test_example_subscribers_load_and_differ() -> None:
    profiles, errors = load_profiles(ROOT / "demo" / "subscribers")
    assert errors == []
    assert len(profiles) == 3
    assert len({p.interests for p in profiles}) == 3
    ada = next(p for p in profiles if p.email == "ada@example.org")
    assert Keyword("RLHF", 2.0) in ada.keywords
    assert Keyword("language model", 1.0) in ada.keywords
    assert ada.keywords[0].is_phrase


def test_full_schema(tmp_path: Path) -> None:
    (tmp_path / "liked.bib").write_text(
        "@article{a, title = {Attention Is {All} You Need},\n"
        "  abstract = {We propose the Transformer.}}\n"
    )
    path = write_subscriber(
        tmp_path,
        "full",
        """
        email = "Full@Example.org"
        name = "Full"
        interests = "graph neural networks"
        keywords = { "message passing" = 2.0, gnn = 1.5 }
        authors = ["Yann LeCun"]
        categories = ["cs.LG"]
        category_mode = "restrict"
        exclude = ["survey", "cs.CR"]
        liked = ["2401.00001"]
        liked_file = "liked.bib"
        max_papers = 5
        min_score = 0.2
        timezone = "Europe/Paris"
        send_hour = 8
        frequency = "weekly"
        weekday = "Fri"
        """,
    )
    p = load_profile(path)
    assert p.email == "Full@example.org"
    assert p.keywords == (Keyword("message passing", 2.0), Keyword("gnn", 1.5))
    assert p.category_mode == "restrict"
    assert p.liked_texts == (("Attention Is All You Need", "We propose the Transformer."),)
    assert (p.frequency, p.weekday, p.send_hour, p.timezone) == (
        "weekly",
        "friday",
        8,
        "Europe/Paris",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'email = "a@example.org"\ninterest = "x"',
            "interest: unknown key; did you mean 'interests'?",
        ),
        ('email = "not an address"\ninterests = "x"', "email:"),
        ('email = "a@example.org"', "give at least one of interests, keywords or liked"),
        ('email = "a@example.org"\ninterests = "x"\nmax_papers = 0', "max_papers:"),
        ('email = "a@example.org"\ninterests = "x"\nfrequency = "hourly"', "frequency:"),
        ('email = "a@example.org"\ninterests = "x"\nliked_file = "missing.bib"', "liked_file:"),
        ('email = "a@example.org\\r\\nBcc: x@evil.org"\ninterests = "x"', "line break"),
    ],
)
def test_bad_profile_reported_by_file_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write_subscriber(tmp_path, "bad", body)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    write_subscriber(tmp_path, "good", 'email = "g@example.org"\ninterests = "x"')
    write_subscriber(tmp_path, "broken", 'email = "g2@example.org"\ninterests = ')
    write_subscriber(tmp_path, "dupe", 'email = "G@example.org"\ninterests = "y"')
    profiles, errors = load_profiles(tmp_path)
    assert [p.slug for p in profiles] == ["dupe"]  # files load in name order
    assert len(errors) == 2
    assert any("broken.toml" in str(e) and "invalid TOML" in str(e) for e in errors)
    assert any("already used" in str(e) for e in errors)


@pytest.mark.parametrize("batch", [500, 1])
def test_the_file_the_database_knows_keeps_its_address(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
    db_url: str,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setattr(files, "BATCH", batch)  # the known file in the batch, or a later one
    folder = tmp_path / "subscribers"
    store = Store(db_url)
    request.addfinalizer(store.close)
    write_subscriber(folder, "zed", 'email = "zed@example.org"\ninterests = "x"')
    assert [p.slug for p in iter_profiles(folder, pytest.fail, store)] == ["zed"]
    write_subscriber(folder, "aaa", 'email = "ZED@example.org"\ninterests = "y"')
    write_subscriber(folder, "mid", 'email = "mid@example.org"\ninterests = "z"')
    errors: list[ProfileError] = []
    assert [p.slug for p in iter_profiles(folder, errors.append, store)] == ["mid", "zed"]
    assert [str(e) for e in errors] == [
        f"{folder / 'aaa.toml'}: email: ZED@example.org is already used by "
        f"{folder / 'zed.toml'} (the file the database knows for it); this file is skipped: "
        "remove it, or change its email"
    ]
    # read-only lists agree and teach the database nothing
    profiles, again = load_profiles(folder, store)
    assert [p.slug for p in profiles] == ["mid", "zed"] and len(again) == 1
    # the known file renamed: the address follows it; without a database, name order rules
    (folder / "zed.toml").rename(folder / "zz.toml")
    (folder / "aaa.toml").unlink()
    assert [p.slug for p in iter_profiles(folder, pytest.fail, store)] == ["mid", "zz"]
    assert store.subscriber_files(["zed@example.org"]) == {"zed@example.org": "zz.toml"}
    write_subscriber(folder, "aaa", 'email = "zed@example.org"\ninterests = "y"')
    assert [p.slug for p in load_profiles(folder, store)[0]] == ["mid", "zz"]
    assert [p.slug for p in load_profiles(folder)[0]] == ["aaa", "mid"]


def test_find_profile_by_name_path_or_email(tmp_path: Path) -> None:
    path = write_subscriber(tmp_path, "zed", 'email = "z@example.org"\ninterests = "x"')
    assert find_profile(tmp_path, "zed").email == "z@example.org"
    assert find_profile(tmp_path, str(path)).email == "z@example.org"
    assert find_profile(tmp_path, "Z@example.org").slug == "zed"
    with pytest.raises(UsageError, match="no subscriber 'nobody'"):
        find_profile(tmp_path, "nobody")
    # when one subscriber fits: the address before the "@", the file's first word, the name
    write_subscriber(tmp_path, "chloe-speech-audio", 'email = "chloe@example.org"\ninterests = "x"')
    write_subscriber(tmp_path, "dr-who", 'email = "x9@example.org"\nname = "Zoë"\ninterests = "x"')
    assert find_profile(tmp_path, "chloe").slug == "chloe-speech-audio"
    assert find_profile(tmp_path, "Chloe-Speech-Audio.toml".lower()).slug == "chloe-speech-audio"
    assert find_profile(tmp_path, "zoe").email == "x9@example.org"
    assert find_profile(tmp_path, "x9").slug == "dr-who"
    write_subscriber(tmp_path, "chloe-2", 'email = "chloe@example.net"\ninterests = "x"')
    with pytest.raises(UsageError, match="'chloe' fits 2 subscribers"):
        find_profile(tmp_path, "chloe")
