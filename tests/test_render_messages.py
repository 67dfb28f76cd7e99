"""Whole messages, byte for byte: the fast renderer and the MIME composer together give
exactly the bytes saved in tests/data/render/messages/, and so does the per-email path
(Jinja -> MJML -> premailer for each message, the whole text encoded at once): the two
paths give the same messages. Any change in escaping, layout, wrapping, quoted-printable
soft line breaks or headers shows here.

To save new expected messages after an intended change of the output:
    .venv/bin/python -m tests.test_render_messages --write
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.config import Config
from digest.delivery import Composer, message_id, signed_url, unsubscribe_base
from digest.models import Digest, Paper, Profile, Rendered, Scored
from digest.rendering import Renderer
from tests.test_render import HOSTILE, load_papers, paper_from

EXPECTED = Path(__file__).parent / "data" / "render" / "messages"
EDITION = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 7, 30, 12, tzinfo=UTC)
SECRET_ENV = "DIGEST_TEST_MESSAGES_SECRET"
MANAGE = "https://digest.example.org/profile?e=chloe%40example.org"


def make_cfg(**render: int) -> Config:
    return Config(
        sender={
            "address": "digest@example.org",
            "name": "Lab Paper Digest",
            "organization": "Example Lab",
            "postal_address": "1 Example Street, Example City",
        },
        unsubscribe={
            "url": "https://digest.example.org/unsubscribe",
            "mailto": "unsubscribe@example.org",
            "secret_env": SECRET_ENV,
        },
        render=render,
    )


def odd_paper() -> Paper:
    """Text that quoted-printable has to work at: leading dots, "=", trailing spaces in
    long words, non-ASCII, a long unbroken link-like word."""
    words = ".NET = a=b ünïcödé  .dot " + "x" * 90 + " end. " + ".start of words " * 12
    return Paper(
        id="2611.00001",
        title=".NET and = signs: a study of dots at the start of lines",
        abstract=words * 3,
        authors=("Zoë Ångström", "=Equal Sign", ".Dot Person", "Ann", "Bo", "Cy"),
        url="https://arxiv.org/abs/2611.00001",
        pdf_url="https://arxiv.org/pdf/2611.00001",
        categories=("cs.CL", "cs.LG", "stat.ML", "cs.AI"),
        upvotes=1,
        comments=2,
    )


def picks(papers: list[Paper], reasons: list[tuple[str, ...]]) -> tuple[Scored, ...]:
    return tuple(Scored(p, 1.0 - i / 100, reasons[i % len(reasons)]) for i, p in enumerate(papers))


REASONS: list[tuple[str, ...]] = [
    ("matches 'speech', 'audio'", "by Yann LeCun (followed)", "212 upvotes"),
    ("matches 'language models'",),
    (
        "matches 'reinforcement learning', 'policy gradient', 'offline RL', "
        "'world models', 'model-based planning'",
        "in cs.LG",
        "similar to a paper you liked",
    ),
    ("close to your interests",),
]


def scenarios(papers: list[Paper]) -> Iterator[tuple[str, Profile, list[Scored] | None, str]]:
    """(name, profile, picks or None for the empty note, manage URL)."""
    hostile = [paper_from(c["paper"]) for c in HOSTILE]
    odd = odd_paper()
    yield (
        "ada-8",
        Profile(
            email="ada@example.org",
            name="Ada Lovelace",
            interests="Language models, reasoning and $\\alpha$-RL",
        ),
        list(picks(papers[:8], REASONS)),
        "",
    )
    no_reasons = list(picks(papers[3:7], REASONS))
    no_reasons[1] = replace(no_reasons[1], reasons=())
    yield (
        "chloe-4",
        Profile(
            email="chloe@example.org", name="Chloé Dubois-Žižek", interests="Graphes, apprentissage"
        ),
        no_reasons,
        MANAGE,
    )
    yield "noname-1", Profile(email="x@example.org"), list(picks(papers[:1], REASONS)), ""
    yield (
        "mallory",
        Profile(
            email="mallory@example.org",
            name="Mallory\r\nBcc: x@example.org <b>",
            interests="<script>alert(1)</script> & more",
        ),
        list(picks([*hostile, *papers[:2]], REASONS)),
        "",
    )
    yield (
        "odd",
        Profile(
            email="dot.person@example.org",
            name=".Dot = Person " + "long " * 12,
            interests="=" * 100,
        ),
        list(picks([odd, *papers[5:8]], [("." + "x" * 80, "= equal"), (".",)])),
        "",
    )
    yield (
        "idn-12",
        Profile(email="user@exämple.de", name="Jörg"),
        list(picks(papers[:12], REASONS)),
        "",
    )
    yield "empty", Profile(email="ada@example.org", name="Ada"), None, ""
    yield "empty-noname", Profile(email="bo@example.org"), None, ""


def build_all(naive: bool = False) -> dict[str, bytes]:
    """Every expected message by name (the secret set in the environment first); with
    ``naive``, the same messages from the per-email path."""
    os.environ[SECRET_ENV] = "tests-only-secret"
    papers = load_papers()
    out: dict[str, bytes] = {}
    for variant, cfg in (("", make_cfg()), ("small-", make_cfg(max_html_bytes=36_000))):
        renderer = Renderer(cfg, fast=not naive)
        renderer.begin_edition([*papers, odd_paper()])
        composer = Composer(cfg)
        base, tokens = unsubscribe_base(cfg), cfg.link_tokens()
        for name, prof, chosen, manage in scenarios(papers):
            if variant == "small-":
                if chosen is None:
                    continue
                many = [
                    replace(p, id=f"{p.id}.{k}", ai_summary=None) for k in range(3) for p in papers
                ]
                chosen = list(picks(many[: 12 if name != "idn-12" else 30], REASONS))
            url = signed_url(base, tokens, prof.email)
            rendered: Rendered
            if chosen is None:
                rendered = renderer.render_empty(prof, EDITION, unsubscribe_url=url)
            else:
                rendered = renderer.render(
                    Digest(prof, EDITION, tuple(chosen)), unsubscribe_url=url, manage_url=manage
                )
            mid = message_id(prof.email, EDITION, composer.domain)
            out[variant + name] = composer.build(prof, EDITION, rendered, now=NOW, mid=mid)
    return out


def with_secret(naive: bool) -> dict[str, bytes]:
    saved = os.environ.get(SECRET_ENV)
    try:
        return build_all(naive)
    finally:
        if saved is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = saved


@pytest.fixture(scope="module")
def built() -> dict[str, bytes]:
    return with_secret(naive=False)


@pytest.fixture(scope="module")
def built_naive() -> dict[str, bytes]:
    return with_secret(naive=True)


def test_every_scenario_has_an_expected_message(built: dict[str, bytes]) -> None:
    assert sorted(p.stem for p in EXPECTED.glob("*.eml")) == sorted(built)


def same_bytes(got: bytes, expected: bytes, name: str) -> None:
    if got != expected:  # the first differing line, for the failure message
        for i, (a, b) in enumerate(zip(got.split(b"\r\n"), expected.split(b"\r\n"), strict=False)):
            assert a == b, f"{name}: line {i + 1} differs"
    assert got == expected


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPECTED.glob("*.eml")))
def test_message_is_byte_identical(built: dict[str, bytes], name: str) -> None:
    same_bytes(built[name], (EXPECTED / f"{name}.eml").read_bytes(), name)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPECTED.glob("*.eml")))
def test_per_email_path_gives_the_same_message(built_naive: dict[str, bytes], name: str) -> None:
    same_bytes(built_naive[name], (EXPECTED / f"{name}.eml").read_bytes(), name)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    EXPECTED.mkdir(parents=True, exist_ok=True)
    for old in EXPECTED.glob("*.eml"):
        old.unlink()
    for key, data in build_all().items():
        (EXPECTED / f"{key}.eml").write_bytes(data)
