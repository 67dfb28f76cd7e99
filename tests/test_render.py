"""Rendering: templates, escaping, the text part, the size guard and the shared fast path."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from digest.config import Config
from digest.errors import RenderError
from digest.models import Digest, Paper, Profile, Rendered, Scored
from digest.rendering import Renderer, make_card
from digest.rendering._textfmt import safe_url, short_authors, shorten, wrap_line

DATA = Path(__file__).parent / "data" / "render"
EDITION = date(2026, 11, 27)
UNSUB = "https://digest.example.org/unsubscribe?e=ada%40example.org&t=0123abcd"
MANAGE = "https://digest.example.org/profile?e=ada%40example.org"


def paper_from(row: dict[str, Any]) -> Paper:
    row = dict(row)
    row["authors"] = tuple(row.get("authors", ()))
    row["categories"] = tuple(row.get("categories", ()))
    return Paper(**row)


def load_papers() -> list[Paper]:
    rows = json.loads((DATA / "papers.json").read_text(encoding="utf-8"))
    return [paper_from(r) for r in rows]


HOSTILE = json.loads((DATA / "hostile.json").read_text(encoding="utf-8"))


def make_cfg(tmp_path: Path | None = None, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "sender": {
            "address": "digest@example.org",
            "name": "Lab Paper Digest",
            "organization": "Example Lab",
            "postal_address": "1 Example Street, Example City",
        },
        **extra,
    }
    if tmp_path is not None:
        data["base_dir"] = tmp_path
    return Config(**data)


def profile(name: str = "Ada", email: str = "ada@example.org") -> Profile:
    return Profile(email=email, name=name, interests="Language models, reasoning and $\\alpha$-RL")


def digest_of(papers: list[Paper], prof: Profile | None = None, reasons: bool = True) -> Digest:
    picks = tuple(
        Scored(p, 1.0 - i / 100, (f"matches 'topic {i}'", "by Someone") if reasons else ())
        for i, p in enumerate(papers)
    )
    return Digest(profile=prof or profile(), edition=EDITION, picks=picks)


@pytest.fixture(scope="module")
def cfg() -> Config:
    return make_cfg()


@pytest.fixture(scope="module")
def papers() -> list[Paper]:
    return load_papers()


@pytest.fixture(scope="module")
def fast(cfg: Config, papers: list[Paper]) -> Renderer:
    r = Renderer(cfg)
    r.begin_edition(papers)
    return r


@pytest.fixture(scope="module")
def naive(cfg: Config) -> Renderer:
    return Renderer(cfg, fast=False)


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


# ------------------------------------------------------------------ the email


def test_subject_leads_with_the_top_pick(fast: Renderer, papers: list[Paper]) -> None:
    out = fast.render(digest_of(papers[:8]), unsubscribe_url=UNSUB)
    top = papers[0].title
    assert len(top) > 60  # shortened at a word, with an ellipsis
    assert out.subject == f"{shorten(top, 60)} + 7 more papers"
    assert out.subject.startswith(top[:40]) and len(out.subject) <= 80
    assert (
        fast.render(digest_of(papers[1:3])).subject
        == f"{shorten(papers[1].title, 60)} + 1 more paper"
    )
    assert fast.render(digest_of(papers[2:3])).subject == shorten(papers[2].title, 60)


def test_subject_comes_from_its_template(tmp_path: Path, papers: list[Paper]) -> None:
    write(
        tmp_path / "mine",
        "subject.txt.j2",
        "{{ sender_name }} for {{ name or email }}:\n  {{ top_title }} ({{ count }})\n",
    )
    r = Renderer(make_cfg(tmp_path, templates_dir="mine"))
    r.begin_edition(papers)
    for who in ("Ada", "Bo", ""):
        out = r.render(digest_of(papers[:3], profile(who)))
        want = (
            f"Lab Paper Digest for {who or 'ada@example.org'}: {shorten(papers[0].title, 60)} (3)"
        )
        assert out.subject == want  # one line; remembered by the values it reads, not mixed up
    empty = r.render_empty(profile("Cy"), EDITION)
    assert empty.subject == "Lab Paper Digest for Cy: (0)"
    write(tmp_path / "blank", "subject.txt.j2", "{# nothing #}\n")
    blank = Renderer(make_cfg(tmp_path, templates_dir="blank"))
    with pytest.raises(RenderError, match=r"subject\.txt\.j2: gives an empty subject"):
        blank.render(digest_of(papers[:1]))


def test_html_has_cards_header_footer_and_client_hints(fast: Renderer, papers: list[Paper]) -> None:
    out = fast.render(digest_of(papers[:10]), unsubscribe_url=UNSUB, manage_url=MANAGE)
    html = out.html
    assert html.lower().startswith("<!doctype html>")
    # header: date and count; preheader; color scheme; dark mode and the mobile rules kept
    assert "Your paper digest for Fri 27 Nov 2026" in html
    assert "10 papers picked for your interests" in html
    assert "display:none" in html and "10 papers today:" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert "@media only screen and (max-width: 480px)" in html
    assert "!important" in html  # dark mode must beat the inlined colours
    assert "<!--[if mso" in html  # Outlook conditional comments kept
    # inlined: the card style sits on the element, no web fonts, no images
    assert re.search(r'<h2 class="dg-title" style="[^"]*font-size:18px', html)
    assert "fonts.googleapis" not in html and "<link" not in html and "<img" not in html
    assert "#000000" not in html.lower().replace('color:#000000;">', "")  # no pure black text
    # cards: linked title, shortened authors, summary, reasons, stats and links
    first = make_card(papers[0], 600)
    assert f'href="{first.url}"' in html
    assert "Why: matches &#39;topic 0&#39;" in html or "Why: matches 'topic 0'" in html
    for p in papers[:10]:
        assert p.ai_summary is None or p.ai_summary[:40] in html
    assert "upvote" in html
    # footer: why, how to change, unsubscribe, sender organization and postal line
    assert "You get this because ada@example.org is subscribed to Lab Paper Digest" in html
    assert f'href="{UNSUB.replace("&", "&amp;")}"' in html
    assert f'href="{MANAGE}"' in html
    assert "Example Lab · 1 Example Street, Example City" in html


def test_pure_black_is_not_used_for_text(fast: Renderer, papers: list[Paper]) -> None:
    html = fast.render(digest_of(papers[:3]), unsubscribe_url=UNSUB).html
    body = html[html.index("<body") :]
    # MJML's default text colour (#000000) is overridden on every text block we emit
    visible = re.sub(r"<div style=\"display:none[^>]*>.*?</div>", "", body, flags=re.S)
    assert "color:#000000" not in visible.replace(" ", "")


def test_text_part_wrapped_with_every_link(fast: Renderer, papers: list[Paper]) -> None:
    out = fast.render(digest_of(papers[:10]), unsubscribe_url=UNSUB, manage_url=MANAGE)
    lines = out.text.splitlines()
    for line in lines:
        assert len(line) <= 78 or " " not in line.strip(), line
    for url in set(hrefs(out.html)):
        assert url.replace("&amp;", "&") in out.text
    assert lines[0] == "Your paper digest for Fri 27 Nov 2026: 10 papers"
    assert re.search(r"Unsubscribe:\s+" + re.escape(UNSUB), out.text)
    assert "Example Lab · 1 Example Street, Example City" in out.text
    assert out.text.endswith("\n") and "\n\n\n" not in out.text


def test_authors_shortened_and_machine_summary_marked_before_the_abstract(
    fast: Renderer,
) -> None:
    p = Paper(
        id="2601.1",
        title="T",
        abstract="The long abstract. " * 50,
        ai_summary="A one-line summary.",
        authors=tuple(f"Author {i}" for i in range(8)),
        url="https://arxiv.org/abs/2601.1",
    )
    card = make_card(p, 600)
    assert card.authors == "Author 0, Author 1, Author 2 … +5"
    assert card.tldr == "A one-line summary."
    assert card.summary.startswith("The long abstract.") and card.summary.endswith("…")
    for level in (600, 300, 150, 80, 0):  # together within the card's budget
        card = make_card(replace(p, ai_summary="A machine summary. " * 30), level)
        assert len(card.tldr) + len(card.summary) <= level
        assert len(card.tldr) <= 260 and bool(card.tldr) == (level > 0)
    card = make_card(replace(p, ai_summary=None), 300)
    assert card.tldr == "" and len(card.summary) <= 300 and card.summary.endswith("…")
    card = make_card(replace(p, abstract=""), 600)  # only the machine's words: still marked
    assert card.tldr == "A one-line summary." and card.summary == ""
    same = replace(p, ai_summary="The long abstract. The long")  # a feed's own opening
    assert make_card(same, 600).tldr == ""
    out = fast.render(digest_of([p]))
    tldr = re.search(r'<p class="dg-tldr"[^>]*>(.*?)</p>', out.html, re.S)
    assert tldr is not None and "TL;DR (machine-written):" in tldr.group(1)
    assert "A one-line summary." in tldr.group(1)
    assert out.html.index("dg-tldr") < out.html.index("The long abstract.")
    assert "  TL;DR (machine-written): A one-line summary.\n  The long abstract." in out.text


def test_upvotes_are_shown_once_per_card(fast: Renderer, naive: Renderer) -> None:
    p = Paper(
        id="2601.2",
        title="Popular",
        abstract="Words.",
        url="https://arxiv.org/abs/2601.2",
        pdf_url="https://arxiv.org/pdf/2601.2",
        upvotes=52,
    )
    d = Digest(profile(), EDITION, (Scored(p, 3.0, ("matches 'words'", "52 upvotes")),))
    for r in (fast, naive):
        out = r.render(d)
        assert out.html.count("52 upvotes") == 1 and out.text.count("52 upvotes") == 1
        assert (
            "Why: matches &#39;words&#39;</p>" in out.html or "Why: matches 'words'</p>" in out.html
        )
        assert "  Why: matches 'words'\n  52 upvotes\n" in out.text


@pytest.mark.parametrize("case", HOSTILE, ids=[c["case"] for c in HOSTILE])
def test_hostile_content_is_inert(
    case: dict[str, Any], fast: Renderer, naive: Renderer, papers: list[Paper]
) -> None:
    bad = paper_from(case["paper"])
    prof = profile(name="Mallory\r\nBcc: x@example.org <b>", email="mallory@example.org")
    d = digest_of([bad, *papers[:2]], prof)
    out = fast.render(d, unsubscribe_url=UNSUB)
    for text in case["html_contains"]:
        assert text in out.html
    for text in case["text_contains"]:
        assert text in out.text
    # nothing executable, only http(s) links, one-line subject
    assert "<script" not in out.html.lower() and "<svg" not in out.html and "<img" not in out.html
    assert "<b>" not in out.html
    for url in hrefs(out.html):
        assert url.startswith(("https://", "http://")), url
        assert " " not in url and '"' not in url
    for scheme in ("javascript:", "vbscript:", "data:text"):
        assert scheme not in out.html.lower() and scheme not in out.text.lower()
    assert "\r" not in out.subject and "\n" not in out.subject
    assert "\r" not in out.text
    assert not any(line.startswith("Bcc:") for line in out.text.splitlines())
    assert "Hi Mallory Bcc: x@example.org &lt;b&gt;," in out.html
    # the per-email path agrees
    ref = naive.render(d, unsubscribe_url=UNSUB)
    assert ref.html == out.html and ref.text == out.text


def test_non_ascii_link_is_percent_encoded(fast: Renderer) -> None:
    case = next(c for c in HOSTILE if c["case"].startswith("non-ASCII"))
    card = make_card(paper_from(case["paper"]), 600)
    assert card.url == ""  # a space inside: not a link at all
    assert safe_url("https://example.org/papers/ünïcode") == (
        "https://example.org/papers/%C3%BCn%C3%AFcode"
    )


# ------------------------------------------------------------------ fast == naive


@pytest.mark.parametrize(
    ("name", "unsub", "manage", "count", "reasons"),
    [
        ("Ada", UNSUB, "", 10, True),
        ("", UNSUB, MANAGE, 3, True),
        ("Ben O'Neil & Co <ben>", "", "", 1, False),
        ("Chloé", "mailto:unsubscribe@example.org?subject=unsubscribe", MANAGE, 7, True),
    ],
)
def test_fast_path_matches_naive_path(
    fast: Renderer,
    naive: Renderer,
    papers: list[Paper],
    name: str,
    unsub: str,
    manage: str,
    count: int,
    reasons: bool,
) -> None:
    prof = profile(name=name, email=f"{name[:3].lower() or 'x'}@example.org")
    d = digest_of(papers[:count], prof, reasons=reasons)
    if reasons:  # one card without reasons among cards with reasons
        d = replace(d, picks=(replace(d.picks[0], reasons=()), *d.picks[1:]))
    a = fast.render(d, unsubscribe_url=unsub, manage_url=manage)
    b = naive.render(d, unsubscribe_url=unsub, manage_url=manage)
    assert not fast.fast.disabled
    assert a.subject == b.subject
    assert a.html == b.html
    assert a.text == b.text


def test_fast_path_renders_papers_missing_from_begin_edition(
    cfg: Config, naive: Renderer, papers: list[Paper]
) -> None:
    r = Renderer(cfg)  # no begin_edition: cards compiled on first use
    d = digest_of(papers[3:6])
    assert r.render(d).html == naive.render(d).html
    assert r.render(d).text == naive.render(d).text


def test_empty_note(fast: Renderer, naive: Renderer) -> None:
    out = fast.render_empty(profile(), EDITION, unsubscribe_url=UNSUB)
    assert out.subject == "Nothing new for you on Fri 27 Nov 2026"
    assert "No new paper matched your interests today" in out.html
    assert "No new paper matched your interests today" in out.text
    assert re.search(r"Unsubscribe:\s+" + re.escape(UNSUB), out.text)
    ref = naive.render_empty(profile(), EDITION, unsubscribe_url=UNSUB)
    assert ref.html == out.html and ref.text == out.text


# ------------------------------------------------------------------ size guard


def test_every_example_digest_is_under_100_kb(fast: Renderer, papers: list[Paper]) -> None:
    for n in (1, 5, 10, len(papers)):
        out = fast.render(digest_of(papers[:n]), unsubscribe_url=UNSUB)
        assert out.size < 100_000 and out.notes == ()
        assert out.size == len(out.html.encode("utf-8"))


def test_size_guard_shortens_abstracts_then_drops_papers(
    papers: list[Paper], caplog: pytest.LogCaptureFixture
) -> None:
    many = [replace(p, id=f"{p.id}.{k}", ai_summary=None) for k in range(4) for p in papers]
    r = Renderer(make_cfg(render={"max_html_bytes": 36_000}))
    r.begin_edition(many)
    with caplog.at_level(logging.WARNING, logger="digest.render"):
        out = r.render(digest_of(many[:12]), unsubscribe_url=UNSUB)
    assert out.size <= 36_000
    assert out.notes == (
        "shortened abstracts to 300 characters to keep the HTML under 36000 bytes",
    )
    assert "+ 11 more papers" in out.subject
    with caplog.at_level(logging.WARNING, logger="digest.render"):
        out = r.render(digest_of(many[:40]), unsubscribe_url=UNSUB)
    assert out.size <= 36_000
    assert any(n.startswith("left out abstracts") for n in out.notes)
    dropped = next(n for n in out.notes if n.startswith("dropped"))
    kept = 40 - int(dropped.split()[1])
    assert f"+ {kept - 1} more papers" in out.subject
    assert out.html.count('class="dg-title"') == kept
    assert "dropped" in caplog.text and "ada@example.org" in caplog.text


# ------------------------------------------------------------------ custom templates


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_templates_dir_overrides_by_name(tmp_path: Path, papers: list[Paper]) -> None:
    builtin = (Path(__file__).parent.parent / "templates" / "_card.txt.j2").read_text()
    write(tmp_path / "mine", "_card.txt.j2", "[paper] " + builtin)
    r = Renderer(make_cfg(tmp_path, templates_dir="mine"))
    out = r.render(digest_of(papers[:2]))
    assert out.text.count("[paper] * ") == 2
    assert not r.fast.disabled


def test_card_template_using_subscriber_values_falls_back(
    tmp_path: Path, papers: list[Paper], caplog: pytest.LogCaptureFixture
) -> None:
    builtin = (Path(__file__).parent.parent / "templates" / "_card.mjml.j2").read_text()
    write(
        tmp_path / "t",
        "_card.mjml.j2",
        builtin.replace("{{ card.title }}", "{{ name }}: {{ card.title }}"),
    )
    r = Renderer(make_cfg(tmp_path, templates_dir="t"))
    naive = Renderer(make_cfg(tmp_path, templates_dir="t"), fast=False)
    r.begin_edition(papers)
    with caplog.at_level(logging.WARNING):
        a = r.render(digest_of(papers[:2], profile("Zed")))
        b = r.render(digest_of(papers[:2], profile("Yan")))
    assert r.fast.disabled and "rendering every email in full" in caplog.text
    assert "Zed: " in a.html and "Yan: " in b.html
    ref = naive.render(digest_of(papers[:2], profile("Yan")))
    assert ref.html == b.html and ref.text == b.text


@pytest.mark.parametrize(
    ("name", "text", "expect"),
    [
        (
            "_footer.mjml.j2",
            "<mj-section>\n<mj-column>\n{% if x %}\n</mj-column>",
            r"_footer\.mjml\.j2:\d+",
        ),
        ("_card.txt.j2", "* {{ card.title }}\n  {{ card.no_such_field }}\n", r"_card\.txt\.j2:2"),
        ("digest.txt.j2", "{% include 'missing.txt.j2' %}\n", r"missing\.txt\.j2"),
    ],
)
def test_template_errors_name_template_and_line(
    tmp_path: Path, papers: list[Paper], name: str, text: str, expect: str
) -> None:
    write(tmp_path / "t", name, text)
    with pytest.raises(RenderError) as info:
        r = Renderer(make_cfg(tmp_path, templates_dir="t"))
        r.render(digest_of(papers[:2]))
    message = str(info.value)
    assert "\n" not in message
    assert re.search(expect, message), message


def test_malformed_mjml_is_a_render_error(tmp_path: Path, papers: list[Paper]) -> None:
    write(tmp_path / "t", "digest.mjml.j2", "<mjml><mj-body><mj-section></mj-body>")
    with pytest.raises(RenderError, match=r"digest\.mjml\.j2: produced malformed MJML"):
        Renderer(make_cfg(tmp_path, templates_dir="t"), fast=False).render(digest_of(papers[:1]))


def test_missing_templates_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"templates_dir .*nope: not a folder"):
        Renderer(make_cfg(tmp_path, templates_dir="nope"))


# ------------------------------------------------------------------ text helpers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://arxiv.org/abs/2406.01234", "https://arxiv.org/abs/2406.01234"),
        ("http://example.org/a?b=1&c=2", "http://example.org/a?b=1&c=2"),
        ("javascript:alert(1)", ""),
        (" JAVASCRIPT:alert(1)", ""),
        ("data:text/html,x", ""),
        ("//example.org/x", ""),
        ("https://example.org/a b", ""),
        ("https://example.org/\r\nX-Injected: 1", ""),
        ('https://example.org/"onmouseover="x', ""),
        ("mailto:u@example.org", ""),
        ("ftp://example.org/x", ""),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_mailto_only_where_allowed() -> None:
    assert safe_url("mailto:u@example.org", allow_mailto=True) == "mailto:u@example.org"


def test_shorten_and_authors_and_wrap() -> None:
    assert shorten("one two three four", 100) == "one two three four"
    assert shorten("one two three four five six", 15) == "one two three…"
    assert short_authors(["A", "B", "C", "D"]) == "A, B, C, D"
    assert short_authors(["A", "B", "C", "D", "E"]) == "A, B, C … +2"
    long = "  " + "word " * 30 + "https://example.org/" + "x" * 90
    wrapped = wrap_line(long.rstrip()).split("\n")
    assert all(line.startswith("  ") for line in wrapped)
    assert wrapped[-1] == "  https://example.org/" + "x" * 90
    assert all(len(line) <= 78 for line in wrapped[:-1])
    assert wrap_line("* " + "word " * 20).split("\n")[1].startswith("  word")


def test_rendered_size_property() -> None:
    assert Rendered(subject="s", html="é", text="").size == 2
