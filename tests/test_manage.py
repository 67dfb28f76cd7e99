"""Managing subscribers from the command line: files edited with their comments kept, the
suppression list, listings and status."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import load
from digest.errors import ProfileError, UsageError
from digest.store import Store
from digest.subscribers import load_profile
from digest.subscribers._manage import slugify, subscribe, unsubscribe

from .conftest import ROOT, write_config

NOW = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config with a copy of the bundled example subscribers (commented files)."""
    cfg = write_config(tmp_path)
    for path in (ROOT / "demo" / "subscribers").glob("*.toml"):
        shutil.copy(path, tmp_path / "subscribers" / path.name)
    return cfg


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def store_of(config: Path) -> Store:
    return Store(load(config).database_url)


def test_unsubscribe_then_subscribe_again_keeps_the_file_as_it_was(project: Path) -> None:
    path = project.parent / "subscribers" / "ada-language-models.toml"
    original = path.read_text(encoding="utf-8")
    assert "# Free text: the main signal." in original

    out = cli("unsubscribe", "ADA@example.org", "--config", str(project))
    assert out.exit_code == 0, out.output
    assert f"unsubscribed: ADA@example.org ({path}: active = false)" in out.output
    after = path.read_text(encoding="utf-8")
    assert after == original + "active = false\n"  # every comment and line kept
    assert load_profile(path).active is False
    store = store_of(project)
    assert "ada@example.org" in store.suppressions()
    store.close()

    out = cli("subscribe", "ada@example.org", "--config", str(project))
    assert out.exit_code == 0, out.output
    assert "resubscribed: ada@example.org" in out.output
    assert path.read_text(encoding="utf-8") == original + "active = true\n"
    store = store_of(project)
    assert store.suppressions() == {}
    store.close()


def test_unsubscribe_keeps_comments_inside_tables(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    path = tmp_path / "subscribers" / "kim.toml"
    path.write_text(
        "# Kim's profile\n"
        'email = "kim@example.org"  # work address\n'
        'interests = "graphs"\n'
        "\n"
        "# weights\n"
        "[keywords]\n"
        '"graph neural network" = 2.0  # the main one\n'
        "GNN = 1.0\n",
        encoding="utf-8",
    )
    unsubscribe(load(cfg), store_of(cfg), "kim@example.org", now=NOW)
    text = path.read_text(encoding="utf-8")
    assert "# Kim's profile" in text and "# work address" in text and "# the main one" in text
    assert text.index("active = false") < text.index("[keywords]")  # not inside the table
    profile = load_profile(path)
    assert profile.active is False
    assert next(k.term for k in profile.keywords) == "graph neural network"


def test_subscribe_writes_a_valid_commented_file(project: Path) -> None:
    out = cli(
        "subscribe",
        "zoe@example.org",
        "--name",
        "Zoë Müller",
        "--interests",
        'Graph neural networks for "molecules" \\ materials',
        "-k",
        "GNN",
        "-k",
        "message passing",
        "--timezone",
        "Europe/Paris",
        "--send-hour",
        "7",
        "--frequency",
        "weekly",
        "--weekday",
        "fri",
        "--config",
        str(project),
    )
    assert out.exit_code == 0, out.output
    path = project.parent / "subscribers" / "zoe-muller.toml"
    assert f"created: zoe@example.org ({path})" in out.output
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Added with `digest subscribe` on ")
    assert "# Free text: the main signal." in text
    p = load_profile(path)
    assert (p.email, p.name) == ("zoe@example.org", "Zoë Müller")
    assert p.interests == 'Graph neural networks for "molecules" \\ materials'
    assert [k.term for k in p.keywords] == ["GNN", "message passing"]
    assert (p.timezone, p.send_hour, p.frequency, p.weekday) == (
        "Europe/Paris",
        7,
        "weekly",
        "friday",
    )
    assert not list((project.parent / "subscribers").glob(".*"))  # no temporary file left


def test_multi_line_interests_stay_readable(project: Path) -> None:
    store = store_of(project)
    done = subscribe(
        load(project),
        store,
        "lin@example.org",
        now=NOW,
        name="Lin",
        interests='Speech recognition.\nLow-resource languages.\nEnds with a quote: "x"',
    )
    store.close()
    text = done.path.read_text(encoding="utf-8")
    assert 'interests = """\nSpeech recognition.\nLow-resource languages.\n' in text
    assert load_profile(done.path).interests.strip().endswith('Ends with a quote: "x"')


def test_subscribe_refuses_a_duplicate_and_a_bad_address(project: Path) -> None:
    before = sorted(p.name for p in (project.parent / "subscribers").iterdir())
    dup = cli("subscribe", "Ben@Example.org", "--interests", "x", "--config", str(project))
    assert dup.exit_code == 1
    assert "Ben@Example.org is already subscribed" in dup.output
    assert "ben-vision-robotics.toml" in dup.output
    bad = cli("subscribe", "not-an-address", "--interests", "x", "--config", str(project))
    assert bad.exit_code == 2 and "invalid email address" in bad.output  # usage errors: 2
    lab = cli("subscribe", "bob@lab", "--interests", "x", "--config", str(project))
    assert lab.exit_code == 2 and "'bob@lab'" in lab.output
    empty = cli("subscribe", "new@example.org", "--config", str(project))
    assert empty.exit_code == 2 and "needs --interests" in empty.output
    badtz = cli(
        "subscribe",
        "tz@example.org",
        "--interests",
        "x",
        "--timezone",
        "Mars/Base",
        "--config",
        str(project),
    )
    assert badtz.exit_code == 2 and "unknown timezone 'Mars/Base'" in badtz.output
    assert "tz.toml" in badtz.output  # named by the file it would have been
    assert sorted(p.name for p in (project.parent / "subscribers").iterdir()) == before


def test_two_people_with_the_same_name_get_two_files(project: Path) -> None:
    store = store_of(project)
    a = subscribe(load(project), store, "sam@a.example", now=NOW, name="Sam", interests="x")
    b = subscribe(load(project), store, "sam@b.example", now=NOW, name="Sam", interests="y")
    store.close()
    assert (a.path.name, b.path.name) == ("sam.toml", "sam-2.toml")


def test_a_suppression_without_a_file_is_recorded_and_cleared_by_subscribing(
    project: Path,
) -> None:
    cfg = load(project)
    store = store_of(project)
    with pytest.raises(UsageError, match=r"stranger@example\.org: unknown address"):
        unsubscribe(cfg, store, "stranger@example.org", now=NOW, reason="complaint")
    assert store.suppressions() == {}  # a typo records nothing
    forced = unsubscribe(
        cfg, store, "stranger@example.org", now=NOW, reason="complaint", unknown_ok=True
    )
    assert forced is None
    assert store.suppressions()["stranger@example.org"][1] == "complaint"
    # an address the database knows (digests went to it) needs no --force once its file is gone
    store.remember_subscriber_files([("gone@example.org", "gone.toml")])
    assert unsubscribe(cfg, store, "gone@example.org", now=NOW) is None
    subscribe(cfg, store, "stranger@example.org", now=NOW, interests="databases")
    assert "stranger@example.org" not in store.suppressions()
    store.close()


def test_a_broken_file_holding_the_address_is_not_duplicated(project: Path) -> None:
    broken = project.parent / "subscribers" / "dan.toml"
    broken.write_text('email = "dan@example.org"\ninterests = "unclosed\n', encoding="utf-8")
    store = store_of(project)
    with pytest.raises(ProfileError, match=r"dan\.toml: mentions dan@example.org but is not valid"):
        subscribe(load(project), store, "dan@example.org", now=NOW, interests="x")
    store.close()


def test_slugify() -> None:
    assert slugify("Zoë Müller") == "zoe-muller"
    assert slugify("  ../../etc/passwd ") == "etc-passwd"
    assert slugify("李") == "subscriber"


def test_subscribers_lists_status_timing_and_what_was_sent(project: Path) -> None:
    cfg = load(project)
    store = store_of(project)
    store.set_delivery("ada@example.org", date(2026, 6, 11), "sent", NOW, papers=["1", "2"])
    store.set_delivery("ada@example.org", date(2026, 6, 12), "sent", NOW, papers=["3"])
    store.set_delivery("chloe@example.org", date(2026, 6, 12), "failed", NOW)
    unsubscribe(cfg, store, "ben@example.org", now=NOW)
    store.suppress("chloe@example.org", NOW, "bounced")  # file still says active
    store.close()
    subscribe(
        cfg,
        store_of(project),
        "eve@example.org",
        now=NOW,
        interests="x",
        settings={"timezone": "Asia/Tokyo", "send_hour": 8},
    )

    out = cli("subscribers", "--config", str(project))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == [
        "EMAIL",
        "STATUS",
        "WHEN",
        "LAST",
        "EDITION",
        "DIGESTS",
        "PAPERS",
        "FILE",
    ]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert rows["ada@example.org"].split()[1:6] == ["active", "daily", "at", "each", "run"]
    assert "2026-06-12" in rows["ada@example.org"] and " 2 " in rows["ada@example.org"]
    assert rows["ada@example.org"].split()[-2:] == ["3", "ada-language-models.toml"]
    assert rows["ben@example.org"].split()[1] == "unsubscribed"
    assert rows["chloe@example.org"].split()[1] == "suppressed"
    assert "daily at 08:00 Asia/Tokyo" in rows["eve@example.org"]
    assert lines[-1] == "2 active, 1 suppressed, 1 unsubscribed"

    data = json.loads(cli("subscribers", "--json", "--config", str(project)).output)
    ada = next(d for d in data if d["email"] == "ada@example.org")
    assert (ada["last_edition"], ada["digests_sent"], ada["papers_sent"]) == ("2026-06-12", 2, 3)


def test_status_shows_runs_schedule_feeds_and_deliveries(project: Path) -> None:
    empty = cli("status", "--config", str(project))
    assert empty.exit_code == 0, empty.output
    assert "last run: never" in empty.output
    assert "next scheduled run: " in empty.output and "'0 7 * * *' UTC" in empty.output

    cfg = load(project)
    store = store_of(project)
    run_id = store.start_run(NOW, date(2026, 6, 12))
    summary = {
        "edition": "2026-06-12",
        "due": 3,
        "sent": 2,
        "ok": False,
        "deferred": [["c@example.org", "451 try later"]],
        "failed": [],
        "feed_errors": [["arxiv", "HTTP 503"]],
    }
    store.finish_run(run_id, NOW, summary)
    store.record_feed("arxiv", "https://example.org/a", NOW, error="HTTP 503")
    store.set_delivery("a@example.org", date(2026, 6, 12), "sent", NOW)
    store.set_delivery("c@example.org", date(2026, 6, 12), "deferred", NOW, reply="451 try later")
    store.close()
    out = cli("status", "--config", str(project))
    assert out.exit_code == 1  # something needs attention
    assert "WITH PROBLEMS" in out.output and "3 due; 2 sent; 1 deferred" in out.output
    assert "feed failed: arxiv: HTTP 503" in out.output
    assert "deliveries of edition 2026-06-12: 1 deferred, 1 sent" in out.output
    assert "deferred: c@example.org: 451 try later" in out.output
    assert cfg.feeds == []  # (no configured feeds to list here)
