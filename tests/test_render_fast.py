"""The fast path's shortcuts give what the long way gives: skeletons put together from a
family's pieces, messages built from the parts, quick checks of links; and its self-check
compares bytes, so a lost space between inline elements falls back to the long way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from digest.qp import QpEncoder
from digest.rendering import Card, Renderer, make_card
from digest.rendering._fast import FastPath
from digest.rendering._templates import DIGEST_HTML, DIGEST_TEXT, FIELDS, render_template
from digest.rendering._textfmt import safe_url
from tests.test_render import UNSUB, digest_of, load_papers, make_cfg, profile


def full_skeleton(fast: FastPath, shape: tuple[bool, ...], count: int) -> tuple[list[str], list]:
    dummy = Card(id="", title="", url="", authors="", summary="", stats="", links=(), categories="")
    context = {**fast.r.constants, **fast._marked_fields(shape), "cards": [dummy] * count}
    context[fast.slot_var] = fast._slot_html()
    from digest.rendering import compile_mjml

    mjml = render_template(fast.html_skeleton_env, DIGEST_HTML, context)
    cut = fast._cut(compile_mjml(mjml, DIGEST_HTML), count, html=True, what=DIGEST_HTML)
    return cut.lits, cut.holes


@pytest.mark.parametrize("first", [2, 3, 7])
@pytest.mark.parametrize("empty", [(), ("name", "interests", "manage_url")])
def test_skeletons_put_together_equal_compiled_ones(first: int, empty: tuple[str, ...]) -> None:
    renderer = Renderer(make_cfg())
    renderer.begin_edition(load_papers()[:2])  # the tag cards compile to: the slots' tag
    fast = renderer.fast
    assert fast is not None and fast.card_tag == "tr"
    fields = {name: ("" if name in empty else "x") for name in FIELDS}
    shape = fast._shape(fields)
    fast._skeleton(DIGEST_HTML, DIGEST_TEXT, fields, first)  # the family's skeleton
    for count in range(1, 14):
        html, _ = fast._skeleton(DIGEST_HTML, DIGEST_TEXT, fields, count)
        assert (html.lits, html.holes) == full_skeleton(fast, shape, count), count
    derived = {k[2] for k in fast.proof if k[1] == shape}
    assert derived == set(range(2, 14)) - {first}


def test_parts_encode_to_the_body_of_the_whole_text() -> None:
    papers = load_papers()
    r = Renderer(make_cfg())
    r.begin_edition(papers)
    qp = QpEncoder()
    for n, name in ((1, "Ada"), (5, ""), (12, "Zoë Ångström-Lovelace"), (12, "Ada")):
        d = digest_of(papers[:n], profile(name=name))
        d = replace(d, picks=(replace(d.picks[0], reasons=()), *d.picks[1:]))
        out = r.render(d, unsubscribe_url=UNSUB)
        for text, parts in ((out.html, out.html_parts), (out.text, out.text_parts)):
            assert len(parts) > 1 and "".join(parts) == text
            assert qp.encode_parts(parts) == QpEncoder().encode(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/a?b=c&d=e", "https://example.org/a?b=c&d=e"),
        ("https://@example.org/", ""),
        ("https:///path", ""),
        ("http://]x/", ""),
        ("https://[::1]/x", "https://[::1]/x"),
        ("https://[x/", ""),
        (" https://example.org/ ", "https://example.org/"),
        ("HTTPS://example.org/é", "HTTPS://example.org/%C3%A9"),
    ],
)
def test_safe_url_quick_and_slow_agree(url: str, expected: str) -> None:
    assert safe_url(url) == expected


@pytest.mark.parametrize("reasons", [True, False])
def test_cards_filled_into_their_shape_equal_cards_compiled_in_full(reasons: bool) -> None:
    from tests.test_render import HOSTILE, paper_from

    fast = Renderer(make_cfg()).fast
    papers = [*load_papers(), *(paper_from(c["paper"]) for c in HOSTILE)]
    cards = [make_card(p, 600) for p in papers]
    if reasons:
        cards = [replace(c, reasons=fast.reasons_marker) for c in cards]
    context = {**fast.r.constants, **fast._marked_fields((True,) * len(FIELDS)), "cards": cards}
    from digest.rendering import compile_mjml

    full = fast._between(
        compile_mjml(render_template(fast.html_cards_env, DIGEST_HTML, context), DIGEST_HTML),
        len(cards),
        True,
    )
    assert fast._card_htmls(cards, context) == full
    shapes = {fast._marked_card(c)[0] for c in cards if fast._marked_card(c)[1] is not None}
    assert len(shapes) < len(cards)  # the shortcut was taken


def test_messages_with_a_subscribers_link_equal_the_per_email_paths() -> None:
    """Addresses and links of every length, dots and "=" anywhere (where quoted-printable
    breaks and escapes lines): the whole message from the fast path is the message from
    the per-email path, byte for byte."""
    import random
    from datetime import UTC, datetime

    from digest.delivery import Composer
    from digest.models import Profile, Rendered

    rng = random.Random(11)
    papers = load_papers()
    cfg = make_cfg()
    r = Renderer(cfg)
    r.begin_edition(papers)
    naive = Renderer(cfg, fast=False)
    composer = Composer(cfg)
    now = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    chars = "abcdefghij.=-_%0123456789"
    for n in range(160):
        local = "r" + "".join(rng.choice("abc.-_0123") for _ in range(rng.randint(0, 40)))
        query = "".join(rng.choice(chars) for _ in range(rng.randint(0, 150)))
        url = f"https://x.example.org/u?{query}"
        prof = Profile(email=f"{local}@example.org", name="Ada", interests="graphs " * (n % 9))
        d = digest_of(papers[: 1 + n % 4], prof)
        out = r.render(d, unsubscribe_url=url, manage_url=url if n % 3 else "")
        fast = composer.build(prof, d.edition, out, now=now)
        if n % 10 == 0:  # the per-email path: about 10 ms a digest
            ref = naive.render(d, unsubscribe_url=url, manage_url=url if n % 3 else "")
            assert (out.html, out.text) == (ref.html, ref.text)
        else:
            ref = Rendered(subject=out.subject, html=out.html, text=out.text)
        assert fast == composer.build(prof, d.edition, replace(ref, notes=()), now=now)


def test_a_lost_space_between_inline_elements_is_caught(tmp_path: Path) -> None:
    """Two inline elements a space apart in a card: the fast path keeps the space (the
    digest equals the per-email one byte for byte), and the self-check, which compares
    bytes, refuses a digest that lost it and falls back to the per-email path."""
    (tmp_path / "t").mkdir()
    card = (Path(__file__).parent.parent / "templates" / "_card.mjml.j2").read_text()
    card = card.replace(
        '<p class="dg-authors">{{ card.authors }}</p>',
        '<p class="dg-authors"><b>{{ card.authors }}</b> <i>{{ card.id }}</i></p>',
    )
    assert "</b> <i>" in card
    (tmp_path / "t" / "_card.mjml.j2").write_text(card)
    cfg = make_cfg(tmp_path, templates_dir="t")
    papers = load_papers()
    d = digest_of(papers[:3])
    r = Renderer(cfg)
    r.begin_edition(papers)
    out = r.render(d, unsubscribe_url=UNSUB)
    ref = Renderer(cfg, fast=False).render(d, unsubscribe_url=UNSUB)
    assert out.html == ref.html and "</b> <i>" in out.html
    fast = r.fast
    assert fast is not None and not fast.disabled
    lost = out.html.replace("</b> <i>", "</b><i>")
    assert not fast._agrees(lost, out.text, (ref.html, ref.text), "digest")
    assert fast.disabled  # from now on every digest the long way, and the log says why


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("{{ card.title }}</a>", "{{ card.title|upper }}</a>"),  # a field changed: long way
        ("{{ card.authors }}", "{{ card.authors }} ({{ card.authors|length }})"),
        ('<div class="dg-card">', '<div class="dg-card" title="{{ card.summary }}">'),
    ],
)
def test_card_shapes_with_custom_card_templates_equal_the_long_way(
    tmp_path: Path, old: str, new: str
) -> None:
    builtin = (Path(__file__).parent.parent / "templates" / "_card.mjml.j2").read_text()
    assert old in builtin
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "_card.mjml.j2").write_text(builtin.replace(old, new), encoding="utf-8")
    from tests.test_render import HOSTILE, paper_from

    papers = [*load_papers(), *(paper_from(c["paper"]) for c in HOSTILE)]
    cfg = make_cfg(tmp_path, templates_dir="t")
    fast = Renderer(cfg)
    fast.begin_edition(papers)
    naive = Renderer(cfg, fast=False)
    for start in range(0, len(papers), 6):
        d = digest_of(papers[start : start + 6])
        a, b = fast.render(d, unsubscribe_url=UNSUB), naive.render(d, unsubscribe_url=UNSUB)
        assert a.html == b.html and a.text == b.text
    assert not fast.fast.disabled
    fp = fast.fast
    cards = [replace(make_card(p, 600), reasons=fp.reasons_marker) for p in papers]
    context = {**fp.r.constants, **fp._marked_fields((True,) * len(FIELDS)), "cards": cards}
    from digest.rendering import compile_mjml

    source = render_template(fp.html_cards_env, DIGEST_HTML, context)
    full = fp._between(compile_mjml(source, DIGEST_HTML), len(cards), True)
    assert fp._card_htmls(cards, context) == full


@pytest.mark.parametrize("n", [1, 4, 10])
def test_web_links_in_the_footer_equal_the_per_email_path_byte_for_byte(n: int) -> None:
    papers = load_papers()
    fast, naive = Renderer(make_cfg()), Renderer(make_cfg(), fast=False)
    fast.begin_edition(papers)
    base = "https://papers.example.org"
    for who in ("Ada", "Zoë <b>&amp;"):
        d = digest_of(papers[:n], profile(name=who))
        links = {
            "unsubscribe_url": f"{base}/unsubscribe?e=a@example.org&token=T1",
            "manage_url": f"{base}/preferences?e=a@example.org&token=T2",
            "view_url": f"{base}/view?e=a@example.org&ed=2026-06-12&token=T3",
        }
        a, b = fast.render(d, **links), naive.render(d, **links)
        assert a.html == b.html and a.text == b.text
        assert links["view_url"] in a.text and "View this digest in your browser" in a.text
        assert links["view_url"].replace("&", "&amp;") in a.html


@pytest.mark.parametrize("n", [1, 3, 10])
def test_vote_links_on_every_card_equal_the_per_email_path_byte_for_byte(n: int) -> None:
    """With the web app, each card carries the reader's "more / less like this" links in
    both parts: the fast path fills them into cards compiled once, and gives the per-email
    path's bytes, cards with reasons or without, hostile papers too."""
    from tests.test_render import HOSTILE, paper_from

    cfg = make_cfg(web={"base_url": "https://papers.example.org"})
    papers = [*load_papers(), *(paper_from(c["paper"]) for c in HOSTILE)]
    fast, naive = Renderer(cfg), Renderer(cfg, fast=False)
    fast.begin_edition(papers)
    assert fast.fast is not None and fast.fast.votes
    for who, email in (("Ada", "ada@example.org"), ("Zoë <b>&amp;", "z.o+ë=1@example.org")):
        from urllib.parse import quote

        vote = f"https://papers.example.org/vote?e={quote(email, safe='@')}&ed=2026-06-12&token=T4"
        for picked, reasons in ((papers[:n], True), (papers[-n:], True), (papers[:n], False)):
            d = digest_of(picked, profile(name=who, email=email), reasons=reasons)
            a = fast.render(d, unsubscribe_url=UNSUB, vote_url=vote)
            b = naive.render(d, unsubscribe_url=UNSUB, vote_url=vote)
            assert a.html_parts, "the fast path made it"
            assert (a.html, a.text) == (b.html, b.text)
            assert a.text.count("\n  More like this:") == a.text.count("\n  Less like this:") == n
            assert a.html.count(">More like this</a>") == a.html.count(">Less like this</a>") == n
            for s in d.picks:
                pid = s.paper.id
                assert f"{vote}&d=up&p={pid}\n" in a.text and f"{vote}&d=down&p={pid}\n" in a.text
                assert f"{vote}&d=up&p={pid}".replace("&", "&amp;") in a.html
        # without a vote link (a digest of another kind), the per-email path, still equal
        d = digest_of(papers[:n], profile(name=who, email=email))
        a, b = fast.render(d, unsubscribe_url=UNSUB), naive.render(d, unsubscribe_url=UNSUB)
        assert (a.html, a.text) == (b.html, b.text) and "More like this" not in a.text
