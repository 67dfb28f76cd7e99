"""Sample digests checked by real clients: headless Chromium (layout at 600 and 375 px, light
and dark) and SpamAssassin (local rules only).

Chromium runs once per colour scheme: a host page holds every sample at both widths as
``srcdoc`` iframes (same origin, so a small script can measure them) and writes the
measurements into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.config import Config
from digest.models import Paper, Rendered
from digest.rendering import Renderer
from digest.rendering._textfmt import clean_text
from tests.test_render import EDITION, HOSTILE, digest_of, load_papers, paper_from, profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SPAMASSASSIN = shutil.which("spamassassin")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium"
)
needs_spamassassin = pytest.mark.skipif(
    SPAMASSASSIN is None, reason="needs SpamAssassin: apt-get install spamassassin"
)
WIDTHS = (600, 375)
SPAM_LIMIT = 2.0
UNBREAKABLE = "X" * 140


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGEST_TEST_UNSUBSCRIBE_SECRET", "a-long-random-secret-for-the-tests-only")
        yield Config(
            sender={
                "address": "digest@example.org",
                "name": "Lab Paper Digest",
                "organization": "Example Lab",
                "postal_address": "1 Example Street, Example City",
            },
            unsubscribe={
                "url": "https://digest.example.org/unsubscribe",
                "secret_env": "DIGEST_TEST_UNSUBSCRIBE_SECRET",
            },
            base_dir=tmp_path_factory.mktemp("clients"),
        )


@pytest.fixture(scope="module")
def samples(cfg: Config) -> dict[str, tuple[Rendered, list[str], Any]]:
    """name -> (rendered, the titles it must show, profile)."""
    from digest.delivery import unsubscribe_url

    papers = load_papers()
    hostile = [paper_from(c["paper"]) for c in HOSTILE]
    long_one = Paper(
        id="2601.09999",
        title=f"An unbreakable title {UNBREAKABLE}",
        abstract="An abstract with a long word " + "y" * 120 + " inside.",
        authors=tuple(f"Author{i}-{'z' * 30}" for i in range(6)),
        url="https://arxiv.org/abs/2601.09999",
        pdf_url="https://arxiv.org/pdf/2601.09999",
    )
    renderer = Renderer(cfg)
    renderer.begin_edition([*papers, *hostile, long_one])
    out: dict[str, tuple[Rendered, list[str], Any]] = {}
    cases: list[tuple[str, list[Paper], Any]] = [
        ("ten-papers", papers[:10], profile()),
        ("hostile", [*hostile, long_one, papers[0]], profile("Mallory <b>", "mal@example.org")),
        ("one-paper", papers[5:6], profile("", "solo@example.org")),
    ]
    for name, chosen, prof in cases:
        digest = replace(digest_of(chosen, prof), profile=prof)
        unsub = unsubscribe_url(cfg, prof.email)
        rendered = renderer.render(digest, unsubscribe_url=unsub)
        out[name] = (rendered, [clean_text(p.title) for p in chosen], prof)
    prof = profile("Dee", "dee@example.org")
    empty = renderer.render_empty(prof, EDITION, unsubscribe_url=unsubscribe_url(cfg, prof.email))
    out["empty"] = (empty, [], prof)
    return out


# ------------------------------------------------------------------ Chromium

MEASURE = """
window.addEventListener('load', () => {
  const out = [];
  for (const f of document.querySelectorAll('iframe')) {
    const d = f.contentDocument, w = f.contentWindow;
    const style = (sel) => {
      const el = d.querySelector(sel);
      if (!el) return null;
      const cs = w.getComputedStyle(el);
      return {color: cs.color, background: cs.backgroundColor};
    };
    const titles = [...d.querySelectorAll('.dg-title')].map((el) => {
      const r = el.getBoundingClientRect(), cs = w.getComputedStyle(el);
      return {text: el.textContent.trim(), left: r.left, right: r.right, width: r.width,
              height: r.height, visibility: cs.visibility, display: cs.display,
              opacity: cs.opacity};
    });
    out.push({name: f.dataset.name, width: +f.dataset.width, inner: w.innerWidth,
              scroll: d.documentElement.scrollWidth, body: d.body.scrollWidth, titles,
              card: style('.dg-card'), title: style('.dg-title-link'),
              summary: style('.dg-summary'), page: style('.dg-body')});
  }
  document.getElementById('out').textContent = JSON.stringify(out);
});
"""


def run_chromium(tmp_path: Path, docs: dict[str, str], *, dark: bool) -> list[dict[str, Any]]:
    assert CHROMIUM is not None
    frames = "\n".join(
        f'<iframe data-name="{name}" data-width="{w}" width="{w}" height="900" '
        f'style="border:0;display:block" srcdoc="{html.escape(doc, quote=True)}"></iframe>'
        for name, doc in docs.items()
        for w in WIDTHS
    )
    host = tmp_path / ("host-dark.html" if dark else "host.html")
    host.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body>"
        f"<pre id='out'></pre>{frames}<script>{MEASURE}</script></body></html>",
        encoding="utf-8",
    )
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / ('profile-dark' if dark else 'profile')}",
        "--virtual-time-budget=10000",
        "--dump-dom",
    ]
    if dark:
        args.append("--force-dark-mode")
    args.append(host.as_uri())
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"<pre id=\"out\">(.*?)</pre>", proc.stdout, re.S)
    assert found and found.group(1), f"chromium printed no measurements: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])


def luminance(css: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture(scope="module")
def layouts(
    samples: dict[str, tuple[Rendered, list[str], Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[bool, list[dict[str, Any]]]:
    if CHROMIUM is None:
        pytest.skip("needs headless Chromium: apt-get install chromium")
    tmp = tmp_path_factory.mktemp("chromium")
    docs = {name: r.html for name, (r, _, _) in samples.items()}
    return {dark: run_chromium(tmp, docs, dark=dark) for dark in (False, True)}


@needs_chromium
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_nothing_overflows_and_every_title_is_visible(
    layouts: dict[bool, list[dict[str, Any]]],
    samples: dict[str, tuple[Rendered, list[str], Any]],
    dark: bool,
) -> None:
    results = layouts[dark]
    assert {(r["name"], r["width"]) for r in results} == {
        (name, w) for name in samples for w in WIDTHS
    }
    for r in results:
        where = f"{r['name']} at {r['width']} px"
        assert r["inner"] == r["width"], where
        assert r["scroll"] <= r["width"] and r["body"] <= r["width"], (where, r["scroll"])
        expected = samples[r["name"]][1]
        assert [t["text"] for t in r["titles"]] == expected, where
        for t in r["titles"]:
            assert t["display"] != "none" and t["visibility"] == "visible", (where, t["text"])
            assert float(t["opacity"]) > 0.9 and t["width"] > 50 and t["height"] > 10, where
            assert t["left"] >= 0 and t["right"] <= r["width"], (where, t)


@needs_chromium
def test_colours_light_and_dark(layouts: dict[bool, list[dict[str, Any]]]) -> None:
    for dark, results in layouts.items():
        for r in results:
            if r["card"] is None:
                continue
            where = f"{r['name']} at {r['width']} px, {'dark' if dark else 'light'}"
            card_bg = r["card"]["background"]
            text = r["summary"]["color"]
            assert rgb(text) != (0, 0, 0), where  # never pure black
            assert contrast(text, card_bg) >= 7, where
            assert contrast(r["title"]["color"], card_bg) >= 4.5, where
            if dark:
                assert luminance(card_bg) < 0.05 and luminance(r["page"]["background"]) < 0.05
            else:
                assert luminance(card_bg) > 0.8


# ------------------------------------------------------------------ SpamAssassin


def spam_scores(mbox: bytes, home: Path) -> list[tuple[float, str]]:
    """(score, report) of every message in ``mbox``: one SpamAssassin start, local rules."""
    assert SPAMASSASSIN is not None
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.run(
        [SPAMASSASSIN, "--local", "--test-mode", "--mbox"],
        input=mbox,
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    out = proc.stdout.decode("utf-8", "replace")
    scores = re.findall(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.M)
    reports = re.findall(r"Content analysis details:.*?(?=\n\n|\Z)", out, re.S)
    assert scores, f"spamassassin gave no score: {proc.stderr.decode()[-2000:]}"
    return [(float(s), r) for s, r in zip(scores, reports, strict=False)]


@needs_spamassassin
def test_spamassassin_scores_below_limit(
    cfg: Config, samples: dict[str, tuple[Rendered, list[str], Any]], tmp_path: Path
) -> None:
    from digest.delivery import build_message

    now = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    mbox = b""
    for name, (rendered, _, prof) in samples.items():
        eml = build_message(cfg, prof, EDITION, rendered, now=now).replace(b"\r\n", b"\n")
        (tmp_path / f"{name}.eml").write_bytes(eml)
        body = eml.rstrip(b"\n").replace(b"\nFrom ", b"\n>From ")
        mbox += b"From digest@example.org Fri Nov 27 07:00:00 2026\n" + body + b"\n\n"
    results = spam_scores(mbox, tmp_path)
    assert len(results) == len(samples)
    for name, (score, report) in zip(samples, results, strict=True):
        assert score < SPAM_LIMIT, f"{name}: {report}"
