"""The whole pipeline as a user runs it: the `digest` command against a real HTTP server
serving fixture feeds and a real SMTP server on loopback, then what the server received."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from .conftest import FEEDS, ROOT, write_config
from .smtpserver import SmtpServer

DIGEST = [sys.executable, "-m", "digest"]
FIXTURES = {
    "/api/daily_papers": ("hf-daily-papers-2026-06-12.json", "application/json"),
    "/rss/cs.LG": ("arxiv-rss-new-format-2024-11-28-trimmed.xml", "application/rss+xml"),
    "/atom/cs.AI": ("arxiv-atom-announce-cs.AI-2025-08-20-truncated.xml", "application/atom+xml"),
    "/feed.xml": (
        "thirdparty-hf-papers-rss-huangboming-feedgen-2026-08-08.xml",
        "application/rss+xml",
    ),
}
TOPICS = {
    "ada@example.org": ("language model", "llm", "reasoning", "rlhf", "text", "token"),
    "ben@example.org": ("robot", "vision", "image", "video", "3d", "visual", "segment", "manipul"),
    "chloe@example.org": ("speech", "audio", "voice", "music", "sound", "spoken", "asr", "tts"),
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": "e2e-Tq8vN3xKp0LzR7mWc2YbH5sJd9Fg"}
    return subprocess.run(
        [*DIGEST, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def site(httpserver: HTTPServer) -> HTTPServer:
    for path, (name, ctype) in FIXTURES.items():
        httpserver.expect_request(path).respond_with_data(
            (FEEDS / name).read_bytes(), content_type=ctype
        )
    httpserver.expect_request("/broken").respond_with_data("oops", status=500)
    return httpserver


def make_project(tmp_path: Path, site: HTTPServer, smtp_port: int, *, broken_feed: bool) -> Path:
    feeds = [
        ("huggingface", site.url_for("/api/daily_papers")),
        ("arxiv-cs.LG", site.url_for("/rss/cs.LG")),
        ("arxiv-cs.AI", site.url_for("/atom/cs.AI")),
        ("hf-feed", site.url_for("/feed.xml")),
    ]
    if broken_feed:
        feeds.append(("broken", site.url_for("/broken")))
    cfg = write_config(
        tmp_path,
        'database = "sqlite:///digest.db"\n',
        smtp=f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        "[http]\nretries = 0\n"
        '[unsubscribe]\nurl = "https://digest.example.org/unsubscribe"\n'
        'mailto = "unsubscribe@example.org"\n',
        feeds=feeds,
    )
    shutil.rmtree(tmp_path / "subscribers")
    shutil.copytree(ROOT / "demo" / "subscribers", tmp_path / "subscribers")
    return cfg


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_run_end_to_end(tmp_path: Path, site: HTTPServer) -> None:
    with SmtpServer() as smtp:
        cfg = make_project(tmp_path, site, smtp.port, broken_feed=True)
        first = run_cli("run", "--config", str(cfg), cwd=tmp_path)
        # The broken feed is reported by name and makes the exit code 1; the rest went out.
        assert first.returncode == 1, first.stderr
        assert "3 sent" in first.stdout
        # ... once: the report's problem line on stderr, no log line repeating it, no INFO
        said = [ln for ln in (first.stdout + first.stderr).splitlines() if "broken" in ln]
        assert len(said) == 1 and "500" in said[0], said
        assert said[0] in first.stderr.splitlines()
        assert " INFO " not in first.stderr

        by_rcpt = {}
        for _sender, rcpts, raw in smtp.messages:
            assert len(rcpts) == 1
            by_rcpt[rcpts[0]] = parse(raw)
        assert sorted(by_rcpt) == sorted(TOPICS)

        tops = {}
        for rcpt, msg in by_rcpt.items():
            assert msg["To"].addresses[0].addr_spec == rcpt
            assert msg.get_content_type() == "multipart/alternative"
            kinds = [p.get_content_type() for p in msg.iter_parts()]
            assert kinds == ["text/plain", "text/html"]
            text = msg.get_body(("plain",)).get_content()
            html = msg.get_body(("html",)).get_content()
            assert "Why:" in text or "why" in text.lower()
            assert "<html" in html.lower()
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            # The first paper card's title is the subscriber's top pick: on their topic.
            top = first_title(text)
            tops[rcpt] = top
            assert any(word in top.lower() for word in TOPICS[rcpt]), (rcpt, top)
        assert len(set(tops.values())) == 3

        # A second run for the same edition sends nothing new and says so.
        before = len(smtp.messages)
        second = run_cli("run", "--config", str(cfg), cwd=tmp_path)
        assert len(smtp.messages) == before
        assert "nothing new to send" in second.stdout, second.stdout


def first_title(text: str) -> str:
    """The first paper card of the plain-text part (title, authors, abstract)."""
    start = text.find("\n* ")
    assert start >= 0, f"no paper card in:\n{text[:2000]}"
    end = text.find("\n\n", start + 1)
    return " ".join(text[start + 3 : end].split())


def test_check_rejects_misspelled_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 'subscriber_dir = "people"\n')
    result = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 2
    assert "subscriber_dir" in result.stderr and "subscribers_dir" in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_config_fetches_and_sends_nothing(tmp_path: Path, site: HTTPServer) -> None:
    with SmtpServer() as smtp:
        cfg = make_project(tmp_path, site, smtp.port, broken_feed=False)
        cfg.write_text(cfg.read_text().replace("[smtp]", "[smtp]\nsecurty = 'ssl'"))
        result = run_cli("run", "--config", str(cfg), cwd=tmp_path)
        assert result.returncode == 2
        assert "securty" in result.stderr
        assert smtp.messages == []
        assert site.log == []
        assert not (tmp_path / "digest.db").exists()


def test_check_and_preview(tmp_path: Path, site: HTTPServer) -> None:
    cfg = make_project(tmp_path, site, 25, broken_feed=False)
    ok = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "3 subscribers OK" in ok.stdout
    (tmp_path / "subscribers" / "zz-broken.toml").write_text(
        'email = "x@example.org"\nmax_paper = 3\n'
    )
    bad = run_cli("check", "--config", str(cfg), cwd=tmp_path)
    assert bad.returncode == 1
    assert "zz-broken.toml" in bad.stderr and "max_paper" in bad.stderr

    out = tmp_path / "preview"
    feed = str(FEEDS / "hf-daily-papers-2026-06-12.json")
    result = run_cli(
        "preview",
        "ada-language-models",
        "--feed",
        feed,
        "--out",
        str(out),
        "--config",
        str(cfg),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    written = result.stdout.split()
    assert [Path(p).suffix for p in written] == [".html", ".txt", ".eml"]
    msg = parse(Path(written[2]).read_bytes())
    assert msg["To"].addresses[0].addr_spec == "ada@example.org"
