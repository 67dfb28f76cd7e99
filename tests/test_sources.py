"""Parsing every fixture format into papers, and normalization."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import FeedError
from digest.sources import paper_json, parse

FEEDS = Path(__file__).parent / "data" / "feeds"


def _parse(name: str, **kw: object) -> list:
    return parse((FEEDS / name).read_bytes(), "test", **kw)  # type: ignore[arg-type]


def test_hf_daily_papers_current_format() -> None:
    papers = _parse("hf-daily-papers-2026-06-12.json")
    assert len(papers) == 30
    first = papers[0]
    assert first.id == "2606.00467"
    assert first.title.startswith("On the Limits of LLM Adaptability")
    assert first.authors[:2] == ("Etienne Casanova", "Rafal Kocielnik")
    assert first.upvotes == 0
    assert first.comments == 2
    assert first.sources == ("test",)
    assert first.hf_url == "https://huggingface.co/papers/2606.00467"
    assert first.url == "https://arxiv.org/abs/2606.00467"


def test_arxiv_empty_feed_is_no_papers_and_error_feed_is_an_error() -> None:
    assert _parse("arxiv-rss-new-format-empty-2024-11-28.xml") == []
    with pytest.raises(FeedError, match="Bad archive 'astroph'"):
        _parse("arxiv-rss-new-format-error-bad-archive-2024-11-28.xml")


def test_paper_json_shape() -> None:
    out = paper_json(_parse("arxiv-rss-new-format-2024-11-28-trimmed.xml")[0])
    assert out["id"] == "2411.17702"
    assert out["published"] == "2024-11-28T05:00:00Z"
    assert out["upvotes"] is None
    assert out["sources"] == ["test"]
    assert out["categories"] == ["eess.SP", "cs.LG"]
