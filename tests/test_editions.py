"""Editions over several (simulated) days: the pipeline run with an injected clock against a
local feed file that changes from day to day, delivering to the outbox.

What is checked is what was delivered: the .eml files (outbox/<edition>/<subscriber>.eml)
and the arXiv ids in their text parts.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import textwrap
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from digest.cli._commands import print_run_summary
from digest.config import load
from digest.errors import LockedError
from digest.pipeline import RunSummary, run, run_lock

from .conftest import DATABASES, FEEDS, write_config, write_subscriber
from .pgserver import PgServer

EVAL = Path(__file__).parent / "data" / "eval"

HF_FILES = (
    "hf-daily-papers-2026-06-12.json",
    "hf-daily-papers-2024-10-15.json",
    "hf-daily-papers-2024-05-29.json",
)
BROAD = "machine learning, language models, vision, robotics, speech, reasoning, agents, data"


def hf_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in HF_FILES:
        out.extend(json.loads((FEEDS / name).read_text(encoding="utf-8")))
    return out


def entry_id(entry: dict[str, Any]) -> str:
    return str(entry["paper"]["id"])


class Project:
    """A config under tmp_path whose one feed is a local file we rewrite each "day"; its
    database is ``database(root)``, set for each test (SQLite, then PostgreSQL)."""

    @staticmethod
    def database(root: Path) -> str:
        return ""

    def __init__(self, root: Path, body: str = "") -> None:
        self.root = root
        self.feed = root / "feed.json"
        self.publish([])
        url = self.database(root)
        if url:
            body = f'database = "{url}"\n' + textwrap.dedent(body)
        self.config = write_config(root, body, feeds=[("huggingface", str(self.feed))])
        self.subscribers = root / "subscribers"
        self.outbox = root / "outbox"

    def publish(self, entries: list[dict[str, Any]]) -> None:
        self.feed.write_text(json.dumps(entries), encoding="utf-8")

    def subscriber(self, slug: str, email_: str, extra: str = "", interests: str = BROAD) -> None:
        write_subscriber(
            self.subscribers,
            slug,
            f'email = "{email_}"\ninterests = "{interests}"\nmax_papers = 100\n{extra}\n',
        )

    def run(self, when: datetime, **kw: Any) -> RunSummary:
        cfg = load(self.config)
        with run_lock(cfg):
            return run(cfg, now=lambda: when, **kw)

    def delivered(self) -> dict[tuple[str, str], set[str]]:
        """(edition, subscriber file stem) -> arXiv ids in the text part."""
        out = {}
        for path in sorted(self.outbox.rglob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = msg.get_body(("plain",))
            assert body is not None
            text = body.get_content()
            ids = set(re.findall(r"arxiv\.org/abs/(\d{4}\.\d{4,5})", text))
            out[(path.parent.name, _subscriber(path))] = ids
        return out

    def subjects(self) -> dict[tuple[str, str], str]:
        out = {}
        for path in sorted(self.outbox.rglob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            out[(path.parent.name, _subscriber(path))] = str(msg["Subject"])
        return out


def _subscriber(path: Path) -> str:
    """The subscriber file stem an outbox file is named after (``<stem>.<hash>.eml``)."""
    return path.name.split(".")[0]


def at(day: int, hour: int, minute: int = 0, month: int = 6) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def papers() -> list[dict[str, Any]]:
    return hf_entries()


@pytest.fixture(autouse=True, params=DATABASES)
def _database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every edition test runs on SQLite (a file in each project's folder) and on
    PostgreSQL (a database of its own for each project of the test)."""
    made: list[str] = []

    def database(root: Path) -> str:
        if request.param == "sqlite":
            return ""
        if not made:
            made.append(request.getfixturevalue("pg_url"))
        else:
            server: PgServer = request.getfixturevalue("pg_server")
            name = f"editions_{uuid.uuid4().hex[:12]}"
            made.append(server.create_database(name))  # new: the store makes its tables
            request.addfinalizer(lambda: server.drop_database(name))
        return made[-1]

    monkeypatch.setattr(Project, "database", staticmethod(database))


# ---------------------------------------------------------------- cron mode


def test_run_is_safe_to_call_any_number_of_times(tmp_path: Path, papers: list[Any]) -> None:
    p = Project(tmp_path)
    p.subscriber("ada", "ada@example.org")
    p.subscriber("ben", "ben@example.org")
    p.publish(papers[:20])
    first = p.run(at(12, 7))
    assert first.due == 2 and len(first.delivery.sent) == 2  # type: ignore[attr-defined]
    for when in (at(12, 7, 5), at(12, 12), at(12, 23, 59)):
        again = p.run(when)
        assert again.due == 0 and again.fetch is None  # nobody due: nothing fetched
        assert again.skipped_counts() == {"already sent this edition": 2}
    assert sorted(p.delivered()) == [("2026-06-12", "ada"), ("2026-06-12", "ben")]


def test_a_new_file_with_a_known_address_is_the_one_reported(
    tmp_path: Path, papers: list[Any]
) -> None:
    p = Project(tmp_path)
    p.subscriber("zed", "zed@example.org", interests="speech recognition")
    p.publish(papers[:20])
    assert len(p.run(at(12, 7)).delivery.sent) == 1  # type: ignore[union-attr]
    # a newcomer's file with the same address (another case) sorts first
    p.subscriber("aaa-copy", "Zed@Example.org", interests="robotics")
    p.subscriber("mia", "mia@example.org")
    p.publish(papers[:40])
    second = p.run(at(13, 7))
    dup, zed = p.subscribers / "aaa-copy.toml", p.subscribers / "zed.toml"
    assert list(second.profile_errors) == [
        f"{dup}: email: Zed@example.org is already used by {zed} (the file the database "
        "knows for it); this file is skipped: remove it, or change its email"
    ]
    assert sorted(k for k in p.delivered() if k[0] == "2026-06-13") == [
        ("2026-06-13", "mia"),
        ("2026-06-13", "zed"),
    ]
    # without a history, the first file by name keeps the address
    (tmp_path / "fresh").mkdir()
    fresh = Project(tmp_path / "fresh")
    fresh.subscriber("zed", "zed@example.org")
    fresh.subscriber("aaa-copy", "zed@example.org")
    fresh.publish(papers[:20])
    (err,) = fresh.run(at(12, 7)).profile_errors
    assert err.startswith(f"{fresh.subscribers / 'zed.toml'}: email: zed@example.org is already")
    assert "the database knows" not in err


def test_a_second_run_while_one_holds_the_lock_is_refused(tmp_path: Path) -> None:
    cfg = load(Project(tmp_path).config)

    def second_run() -> None:
        with run_lock(cfg):
            pass

    with run_lock(cfg), pytest.raises(LockedError, match="another digest run holds"):
        second_run()
    second_run()  # released again


# ---------------------------------------------------------------- editions lose nothing


def test_a_missed_days_papers_arrive_once_in_the_next_edition(
    tmp_path: Path, papers: list[Any]
) -> None:
    p = Project(tmp_path)
    p.subscriber("ada", "ada@example.org")
    day1, day2, day3 = papers[:15], papers[15:30], papers[30:45]
    ids = [{entry_id(e) for e in part} for part in (day1, day2, day3)]

    p.publish(day1)
    p.run(at(12, 7))
    # Day two: `digest fetch` ran from cron, but the 07:00 run never happened.
    p.publish(day2)
    cfg = load(p.config)
    from digest.sources import fetch_all
    from digest.store import Store

    store = Store(cfg.database_url)
    try:
        fetch_all(cfg, store, lambda: at(13, 6))
    finally:
        store.close()
    # Day three: the feed has moved on to day three's papers.
    p.publish(day3)
    third = p.run(at(14, 7))
    assert third.candidates == len(ids[1] | ids[2])

    got = p.delivered()
    assert sorted(got) == [("2026-06-12", "ada"), ("2026-06-14", "ada")]
    first, late = got[("2026-06-12", "ada")], got[("2026-06-14", "ada")]
    assert first and first <= ids[0]
    assert late & ids[1], "day two's papers are in the next edition"
    assert late & ids[2]
    assert late <= ids[1] | ids[2] and not first & late

    # Re-running the edition sends nothing; backfilling the missed day finds its papers
    # already sent in the 14th and sends nothing either.
    assert p.run(at(14, 9), edition=date(2026, 6, 14)).delivery is None
    backfill = p.run(at(14, 10), edition=date(2026, 6, 13))
    assert backfill.candidates == 0 and backfill.no_papers == {date(2026, 6, 13): 1}
    assert backfill.nothing == []  # no candidates: not a threshold matter
    assert sorted(p.delivered()) == [("2026-06-12", "ada"), ("2026-06-14", "ada")]


def test_backfilling_an_edition_before_the_next_one_runs(tmp_path: Path, papers: list[Any]) -> None:
    p = Project(tmp_path)
    p.subscriber("ada", "ada@example.org")
    p.publish(papers[:15])
    p.run(at(12, 7))
    p.publish(papers[15:30])  # the 13th's papers; the 13th's run failed
    backfill = p.run(at(14, 6), edition=date(2026, 6, 13))
    assert backfill.editions == [date(2026, 6, 13)] and backfill.candidates == 15
    p.publish(papers[15:40])  # the feed still lists yesterday's papers, and five new ones
    today = p.run(at(14, 7))
    assert today.candidates == 10  # only the ones not seen before
    got = p.delivered()
    assert got[("2026-06-13", "ada")] <= {entry_id(e) for e in papers[15:30]}
    assert got[("2026-06-14", "ada")] <= {entry_id(e) for e in papers[30:40]}


def test_nothing_above_threshold_sends_nothing_and_says_why(
    tmp_path: Path, papers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    p = Project(tmp_path)
    p.subscriber("picky", "picky@example.org", "min_score = 1000.0")
    p.publish(papers[:20])
    with caplog.at_level(logging.INFO, logger="digest"):
        summary = p.run(at(12, 7))
    assert summary.nothing == ["picky@example.org"]
    assert p.delivered() == {}
    assert (
        "picky@example.org: nothing above min_score 1000.00 and the relevance floor 0.51 in "
        "20 papers; not sending"
    ) in caplog.text


def arxiv_day(count: int = 150) -> list[dict[str, Any]]:
    """A day of real arXiv papers (tests/data/eval) as Hugging Face daily-papers entries:
    an edition as broad as the ones the relevance floor was calibrated on."""
    out = []
    with (EVAL / "papers.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["day"] == "2025-07-03" and len(out) < count:
                paper = {"id": r["id"], "title": r["title"], "summary": r["abstract"]}
                paper |= {"authors": [{"name": "Ada Lovelace"}], "publishedAt": "2026-06-11"}
                out.append({"paper": paper})
    return out


VISION = "computer vision: object detection, segmentation and 3D reconstruction"


def test_a_quiet_day_sends_fewer_papers(tmp_path: Path) -> None:
    """A paper not relevant in absolute terms is not sent to fill max_papers: a subscriber
    to a topic the edition hardly covers gets fewer papers than they allow."""
    p = Project(tmp_path)
    p.subscriber("stars", "stars@example.org", interests="galaxy formation and dark matter")
    p.subscriber("vision", "vision@example.org", interests=VISION)
    p.publish(arxiv_day())
    p.run(at(12, 7))
    got = p.delivered()
    assert 0 < len(got[("2026-06-12", "stars")]) < len(got[("2026-06-12", "vision")]) < 100


@pytest.mark.parametrize("empty_digest", ["skip", "note"])
def test_nothing_above_the_relevance_floor_follows_empty_digest(
    tmp_path: Path, empty_digest: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = Project(tmp_path, f'empty_digest = "{empty_digest}"\n[ranking]\nrelevance_floor = 0.7\n')
    p.subscriber("stars", "stars@example.org", interests="galaxy formation and dark matter")
    p.publish(arxiv_day())
    with caplog.at_level(logging.INFO, logger="digest"):
        summary = p.run(at(12, 7))
    assert summary.nothing == ["stars@example.org"]
    if empty_digest == "skip":
        assert p.delivered() == {}
        assert (
            "stars@example.org: nothing above min_score 0.00 and the relevance floor 0.70 in "
            "150 papers; not sending"
        ) in caplog.text
    else:
        assert p.subjects() == {("2026-06-12", "stars"): "Nothing new for you on Fri 12 Jun 2026"}


# ---------------------------------------------------------------- a bad morning


class Switch:
    """A feed on a real HTTP server that answers 500 until it is switched on."""

    def __init__(self, server: HTTPServer, entries: list[dict[str, Any]]) -> None:
        self.up = False
        self.entries = entries
        server.expect_request("/hf").respond_with_handler(self.handle)
        self.url = server.url_for("/hf")

    def handle(self, _: Request) -> Response:
        if not self.up:
            return Response("down for maintenance", status=500)
        return Response(json.dumps(self.entries), content_type="application/json")


@pytest.mark.parametrize("empty_digest", ["skip", "note"])
@pytest.mark.parametrize("second_run", ["run", "run --edition"])
def test_a_run_with_every_feed_down_does_not_use_up_the_edition(
    httpserver: HTTPServer,
    tmp_path: Path,
    papers: list[Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    empty_digest: str,
    second_run: str,
) -> None:
    feed = Switch(httpserver, papers[:20])
    p = Project(tmp_path)
    p.config = write_config(
        tmp_path,
        f'empty_digest = "{empty_digest}"\n[http]\nretries = 0\n',
        feeds=[("huggingface", feed.url)],
    )
    p.subscriber("ada", "ada@example.org")
    today = date(2026, 12, 6)
    with caplog.at_level(logging.INFO, logger="digest"):
        down = p.run(at(6, 7, month=12))
    print_run_summary(load(p.config), down)
    out = capsys.readouterr().out
    assert down.fetch is not None and [n for n, _ in down.fetch.errors] == ["huggingface"]
    assert not down.ok  # exit 1: a feed failed
    assert down.candidates == 0 and down.no_papers == {today: 1} and down.nothing == []
    assert p.delivered() == {}  # not even an "empty" note
    assert "threshold" not in out and "nothing above" not in caplog.text
    assert "1 subscriber(s) not sent edition 2026-12-06: no candidate papers yet" in out
    assert "every feed failed" in caplog.text and "the edition stays open" in caplog.text

    feed.up = True  # two hours later the feed is back
    kw = {"edition": today} if second_run == "run --edition" else {}
    back = p.run(at(6, 9, month=12), **kw)
    assert back.ok and back.candidates == 20 and back.no_papers == {}
    got = p.delivered()
    assert list(got) == [("2026-12-06", "ada")]
    assert got[("2026-12-06", "ada")] and got[("2026-12-06", "ada")] <= {
        entry_id(e) for e in papers[:20]
    }
    # The next day brings only what is new since.
    feed.entries = papers[15:30]
    tomorrow = p.run(at(7, 7, month=12))
    assert tomorrow.candidates == 10
    assert got[("2026-12-06", "ada")].isdisjoint(p.delivered()[("2026-12-07", "ada")])


def test_a_day_with_nothing_new_sends_nothing_and_keeps_the_edition_open(
    tmp_path: Path, papers: list[Any]
) -> None:
    """Feeds up but nothing new at 07:00: no edition is closed; papers arriving at 10:00
    go out in that same day's edition, to whoever has not had it."""
    p = Project(tmp_path, 'empty_digest = "note"')
    p.subscriber("ada", "ada@example.org")
    p.publish(papers[:10])
    p.run(at(12, 7))
    quiet = p.run(at(13, 7))  # the feed still lists yesterday's papers
    assert quiet.candidates == 0 and quiet.no_papers == {date(2026, 6, 13): 1}
    p.publish(papers[:20])
    later = p.run(at(13, 10))
    assert later.candidates == 10
    got = p.delivered()
    assert sorted(got) == [("2026-06-12", "ada"), ("2026-06-13", "ada")]
    assert got[("2026-06-13", "ada")] <= {entry_id(e) for e in papers[10:20]}


# ---------------------------------------------------------------- per-subscriber time


def test_two_subscribers_in_different_zones_get_theirs_at_their_own_hour(
    tmp_path: Path, papers: list[Any]
) -> None:
    p = Project(tmp_path, 'empty_digest = "note"')
    p.subscriber("tokyo", "tokyo@example.org", 'timezone = "Asia/Tokyo"\nsend_hour = 8')
    p.subscriber("paris", "paris@example.org", 'timezone = "Europe/Paris"\nsend_hour = 8')
    sends: list[tuple[str, str, str]] = []  # (utc time, who, edition)
    start = at(12, 7)  # 09:00 in Paris, 16:00 in Tokyo
    for h in range(46):
        when = start + timedelta(hours=h)
        if h % 6 == 0:
            p.publish(papers[(h // 6) * 5 : (h // 6) * 5 + 5])  # fresh papers four times a day
        summary = p.run(when)
        delivery = summary.delivery
        for who in getattr(delivery, "sent", []):
            sends.append((when.strftime("%d %H:%M"), who.split("@")[0], str(summary.editions)))
    # Each gets one digest per local day, at their local 08:00 (after the first, which was
    # due at once: it was already past 08:00 on the 12th in both places).
    assert [(t, who) for t, who, _ in sends if who == "paris"] == [
        ("12 07:00", "paris"),
        ("13 06:00", "paris"),  # 08:00 CEST
    ]
    assert [(t, who) for t, who, _ in sends if who == "tokyo"] == [
        ("12 07:00", "tokyo"),  # 16:00 JST on the 12th
        ("12 23:00", "tokyo"),  # 08:00 JST on the 13th
        ("13 23:00", "tokyo"),  # 08:00 JST on the 14th
    ]
    editions = {key for key in p.delivered()}
    assert editions == {
        ("2026-06-12", "paris"),
        ("2026-06-13", "paris"),
        ("2026-06-12", "tokyo"),
        ("2026-06-13", "tokyo"),
        ("2026-06-14", "tokyo"),
    }
    # Nobody got a paper twice.
    for who in ("paris", "tokyo"):
        seen: set[str] = set()
        for (_, stem), ids in sorted(p.delivered().items()):
            if stem == who:
                assert not ids & seen
                seen |= ids


def test_the_night_clocks_go_back_sends_once(tmp_path: Path, papers: list[Any]) -> None:
    """Hourly runs through 25 October in Paris: 02:00 happens twice; one digest."""
    p = Project(tmp_path, 'empty_digest = "note"')
    p.subscriber("night", "night@example.org", 'timezone = "Europe/Paris"\nsend_hour = 2')
    p.publish(papers[:10])
    paris = ZoneInfo("Europe/Paris")
    sent_at = []
    when = datetime(2026, 10, 24, 12, tzinfo=paris).astimezone(UTC)
    while when < datetime(2026, 10, 26, 12, tzinfo=paris):
        local = when.astimezone(paris)
        if local.hour == 0:  # new papers every day at midnight
            p.publish(papers[(local.day - 23) * 10 : (local.day - 22) * 10])
        if getattr(p.run(when).delivery, "sent", []):
            sent_at.append(when.astimezone(paris).strftime("%d %H:%M %Z"))
        when += timedelta(hours=1)
    assert sent_at == ["24 12:00 CEST", "25 02:00 CEST", "26 02:00 CET"]


# ---------------------------------------------------------------- weekly


def test_weekly_subscribers_get_one_email_a_week_with_the_best_of_the_week(
    tmp_path: Path, papers: list[Any]
) -> None:
    p = Project(tmp_path)
    p.subscriber("daily", "daily@example.org")
    p.subscriber("weekly", "weekly@example.org", 'frequency = "weekly"\nweekday = "friday"')
    # Fri 12 June to Thu 25 June, one run a day at 07:00; new papers on some days.
    news = {13: papers[0:8], 16: papers[8:16], 18: papers[16:24], 22: papers[24:32]}
    for day in range(12, 26):
        if day in news:
            p.publish(news[day])
        p.run(at(day, 7))
    p.publish(papers[32:40])
    p.run(at(26, 7))  # Friday the 26th
    got = p.delivered()
    weekly = sorted(ed for ed, who in got if who == "weekly")
    daily = sorted(ed for ed, who in got if who == "daily")
    assert weekly == ["2026-06-19", "2026-06-26"]  # Fridays only (nothing new on the 12th)
    assert daily == ["2026-06-13", "2026-06-16", "2026-06-18", "2026-06-22", "2026-06-26"]
    week1 = got[("2026-06-19", "weekly")]
    week2 = got[("2026-06-26", "weekly")]
    ids = {day: {entry_id(e) for e in entries} for day, entries in news.items()}
    assert week1 <= ids[13] | ids[16] | ids[18]
    assert week1 & ids[13] and week1 & ids[18]  # from across the week, not just Friday
    assert week2 <= ids[22] | {entry_id(e) for e in papers[32:40]}
    assert not week1 & week2


# ---------------------------------------------------------------- unsubscribed, stopping


def test_a_suppression_wins_over_the_file(tmp_path: Path, papers: list[Any]) -> None:
    from digest.store import Store

    p = Project(tmp_path)
    p.subscriber("ada", "Ada@Example.org")
    p.subscriber("ben", "ben@example.org")
    store = Store(load(p.config).database_url)
    store.suppress("ada@example.org", at(11, 0), "clicked unsubscribe")
    store.close()
    p.publish(papers[:10])
    summary = p.run(at(12, 7))
    assert ("Ada@example.org", "unsubscribed") in summary.skipped
    assert sorted(p.delivered()) == [("2026-06-12", "ben")]


def test_a_stop_request_before_the_run_sends_nothing(tmp_path: Path, papers: list[Any]) -> None:
    p = Project(tmp_path)
    p.subscriber("a", "a@example.org")
    p.publish(papers[:10])
    stop = threading.Event()
    stop.set()
    early = run(load(p.config), now=lambda: at(12, 7), stop=stop)
    assert early.stopped and early.fetch is None and early.delivery is None
    assert p.delivered() == {}
    assert len(p.run(at(12, 8)).delivery.sent) == 1  # type: ignore[attr-defined]


def test_a_stop_request_ends_the_run_after_the_message_in_flight(
    tmp_path: Path, papers: list[Any]
) -> None:
    p = Project(tmp_path)
    for name in ("a", "b", "c"):
        p.subscriber(name, f"{name}@example.org")
    p.publish(papers[:10])
    # SIGTERM arrives once the first message is out (seen through the clock the run reads).
    stop = threading.Event()

    def clock() -> datetime:
        if any(p.outbox.rglob("*.eml")):
            stop.set()
        return at(12, 7)

    summary = run(load(p.config), now=clock, stop=stop)
    assert summary.stopped
    first = sorted(p.delivered())
    assert len(first) < 3, "deliver() should stop taking new messages once stop is set"
    rest = p.run(at(12, 8))
    assert len(rest.delivery.sent) == 3 - len(first)  # type: ignore[attr-defined]
    assert len(p.delivered()) == 3
