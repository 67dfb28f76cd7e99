"""Shared test helpers: paths to bundled data, config files written under tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
FEEDS = DATA / "feeds"


def write_config(
    directory: Path, body: str = "", *, feeds: list[tuple[str, str]] | None = None, smtp: str = ""
) -> Path:
    """A minimal valid config.toml under ``directory`` plus ``body`` (top-level keys first)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "subscribers").mkdir(exist_ok=True)
    feed_text = "".join(
        f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\n' for name, url in (feeds or [])
    )
    text = (
        textwrap.dedent(body).strip()
        + "\n"
        + textwrap.dedent(
            """
        [sender]
        address = "digest@example.org"
        name = "Paper Digest"
        organization = "Test Lab"
        postal_address = "1 Test Street"
        """
        )
        + (textwrap.dedent(smtp) if smtp else "")
        + feed_text
    )
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_subscriber(directory: Path, slug: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slug}.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def tmp_config(tmp_path: Path) -> Path:
    return write_config(tmp_path)
