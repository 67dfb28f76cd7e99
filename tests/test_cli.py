"""The command line as people meet it: options before or after the command, exit codes that
tell config and usage errors (2) from failures (1), `digest check` saying what it checked,
-q, each failure said once, and the messages that name who and when."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import main
from digest.cli._commands import print_run_summary
from digest.config import load
from digest.pipeline import run, run_lock
from digest.subscribers import load_profile

from .conftest import FEEDS, ROOT, write_config, write_subscriber
from .smtpserver import SmtpServer

SECRET = "cli-test-Tq8vN3xKp0LzR7mWc2YbH5sJd9Fg"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


def digest(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a process of its own (its own logging set-up)."""
    full = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET, **env}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    config = write_config(
        tmp_path,
        'database = "sqlite:///digest.db"\n',
        feeds=[("hf", str(FEEDS / "hf-daily-papers-2026-06-12.json"))],
    )
    write_subscriber(
        tmp_path / "subscribers", "ada", 'email = "ada@example.org"\ninterests = "LLMs"'
    )
    return config


# ---------------------------------------------------------------- options and exit codes


def test_config_verbose_and_quiet_go_before_or_after_the_command(project: Path) -> None:
    for args in (
        ("--config", str(project), "status"),
        ("status", "--config", str(project)),
        ("-q", "--config", str(project), "status", "-v"),
    ):
        out = cli(*args)
        assert out.exit_code == 0, (args, out.output)
        assert ("last run: never" in out.output) != ("-q" in args)  # -q: all well, silent
    missing = cli("--config", str(project.parent / "nope.toml"), "status")
    assert missing.exit_code == 2 and "nope.toml: file not found" in missing.output
    assert "digest init writes one" in missing.output  # where a new user gets one


def test_config_and_usage_errors_exit_2(project: Path) -> None:
    text = project.read_text()
    project.write_text(text.replace("[sender]", '[smtp]\nport = "2526"\n[sender]'))
    port = cli("check", "--config", str(project))
    assert port.exit_code == 2
    assert (
        "smtp.port: must be a whole number (got '2526'); write it without quotes: port = 2526"
        in (port.output)
    )
    project.write_text('subscribers_dir = "people"\n' + text)
    for command in ("run", "check", "subscribers", "preview --all"):
        out = cli(*command.split(), "--config", str(project))
        assert out.exit_code == 2, (command, out.output)
        assert "subscribers_dir:" in out.output or "subscribers folder not found" in out.output
        assert "mkdir -p" in out.output
    project.write_text(text)
    assert cli("subscribe", "bob@lab", "-k", "x", "--config", str(project)).exit_code == 2
    assert cli("rank", "--subscriber", "nobody", "--config", str(project)).exit_code == 2


def test_unsubscribing_an_unknown_address_says_so(project: Path) -> None:
    typo = cli("unsubscribe", "ada@exmaple.org", "--config", str(project))
    assert typo.exit_code == 2  # an unknown subscriber on the command line, as for rank or vote
    assert "ada@exmaple.org: unknown address" in typo.output
    assert "suppression recorded" not in typo.output
    forced = cli("unsubscribe", "ada@exmaple.org", "--force", "--config", str(project))
    assert forced.exit_code == 0 and "suppression recorded" in forced.output
    known = cli("unsubscribe", "ADA@example.org", "--config", str(project))
    assert known.exit_code == 0 and "active = false" in known.output


# ---------------------------------------------------------------- digest check


def test_check_says_what_it_checked_and_what_not(project: Path) -> None:
    out = cli("check", "--config", str(project))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith(f"{project}: valid; 1 feeds, database sqlite:///")
    assert any(ln.startswith("sending: none; messages are written to") for ln in lines)
    assert any(ln.endswith("subscribers: 1 subscribers OK, 0 broken") for ln in lines)
    assert lines[-1] == "not checked: the feeds (digest fetch tries each)"
    assert "note: [sender] address digest@example.org is an example address" in out.output
    text = project.read_text()
    project.write_text(text.replace("sqlite:///digest.db", "postgresql://digest@db.invalid/d"))
    server = cli("check", "--config", str(project))
    assert server.exit_code == 0, server.output  # the server is not reached ...
    assert server.output.splitlines()[-1].endswith(
        "; the database server (digest db status connects to it)"  # ... and that is said
    )
    project.write_text(text)
    ada = project.parent / "subscribers" / "ada.toml"
    ada.write_text(ada.read_text() + "\nactive = false\n")
    paused = cli("check", "--config", str(project))
    assert paused.exit_code == 1, paused.output  # a file, but nobody gets a digest
    assert "1 subscribers OK, 0 broken; 1 of them with active = false" in paused.output
    assert "no active subscriber in" in paused.output
    ada.unlink()
    empty = cli("check", "--config", str(project))
    assert empty.exit_code == 1  # nobody to send to is not "all good"
    assert "no subscriber in" in empty.output and "digest subscribe EMAIL" in empty.output


def test_check_with_a_login_but_no_password_never_says_ok(project: Path) -> None:
    text = project.read_text()
    project.write_text(text + '\n[smtp]\nhost = "localhost"\nuser = "digest"\n')
    out = cli("check", "--config", str(project), env={"DIGEST_SMTP_PASSWORD": ""})
    assert out.exit_code == 2
    assert "valid" not in out.output and "OK" not in out.output
    assert "DIGEST_SMTP_PASSWORD is empty" in out.output


@pytest.mark.parametrize("tls", [None, "starttls"])
def test_check_smtp_logs_in_and_gives_a_one_line_verdict(project: Path, tls: str | None) -> None:
    auth = ("digest", "right horse battery") if tls else None
    text = project.read_text()
    with SmtpServer(tls=tls, auth=auth) as srv:
        login = 'user = "digest"\n' if tls else ""
        project.write_text(
            text + f'\n[smtp]\nhost = "localhost"\nport = {srv.port}\n'
            f'security = "{tls or "none"}"\nca_file = "{srv.ca_file or ""}"\n{login}'
        )
        env = {"DIGEST_SMTP_PASSWORD": "right horse battery"}
        plain = cli("check", "--config", str(project), env=env)
        assert srv.connections == 0  # without --smtp, the relay is left alone ...
        assert "not checked: the SMTP relay (digest check --smtp" in plain.output  # ... and said
        good = cli("check", "--smtp", "--config", str(project), env=env)
        assert good.exit_code == 0, good.output
        (verdict,) = [ln for ln in good.output.splitlines() if ln.startswith("smtp: ")]
        assert verdict.startswith(f"smtp: localhost:{srv.port}: OK: ")
        assert verdict.endswith("nothing was sent")
        if tls:
            bad = cli(
                "check", "--smtp", "--config", str(project), env={"DIGEST_SMTP_PASSWORD": "no"}
            )
            assert bad.exit_code == 1
            assert "smtp: FAILED: " in bad.output and "authentication failed (535" in bad.output
        assert srv.messages == []


# ---------------------------------------------------------------- what a run prints


def test_run_reports_each_failure_once_and_is_silent_with_q(project: Path) -> None:
    cwd = project.parent
    ok = digest("run", "-q", "--config", str(project), cwd=cwd)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "" and ok.stderr == ""  # cron mails nothing when all is well
    text = project.read_text()
    project.write_text(text + '\n[[feeds]]\nname = "gone"\nurl = "missing.json"\n')
    (cwd / "digest.db").unlink()
    broken = digest("run", "--config", str(project), cwd=cwd)
    assert broken.returncode == 1
    said = [ln for ln in (broken.stdout + broken.stderr).splitlines() if "gone" in ln]
    assert len(said) == 1 and said[0].startswith("  feed failed: gone: "), said
    assert "'gone'" not in said[0]  # the feed named once: "gone: feed 'gone': ..." before
    assert "1 sent" in broken.stdout and " INFO " not in broken.stderr
    (cwd / "digest.db").unlink()
    quiet = digest("-q", "run", "--config", str(project), cwd=cwd)
    assert quiet.returncode == 1  # something failed: the whole report, the problem once
    assert quiet.stdout == broken.stdout and quiet.stderr.splitlines() == said


def test_a_run_with_nobody_to_send_to_says_so(project: Path) -> None:
    (project.parent / "subscribers" / "ada.toml").unlink()
    empty = cli("run", "--config", str(project))
    assert empty.exit_code == 0, empty.output
    assert "candidate papers" not in empty.output  # nothing was fetched: no count to give
    assert "nothing fetched or sent: no subscriber in " in empty.output
    assert "add one with digest subscribe EMAIL --interests TEXT" in empty.output
    write_subscriber(project.parent / "subscribers", "ada", 'email = "ada@example.org"\n')
    broken = cli("run", "--config", str(project))  # no interests: the file is reported
    assert broken.exit_code == 1 and "nobody is due now" in broken.output
    assert "subscriber failed: " in broken.output and "no subscriber in" not in broken.output
    write_subscriber(
        project.parent / "subscribers", "ada", 'email = "ada@example.org"\ninterests = "LLMs"'
    )
    assert "1 sent" in cli("run", "--config", str(project)).output
    again = cli("run", "--config", str(project))
    assert "nobody is due now; nothing fetched or sent" in again.output
    assert "1 subscriber(s) skipped: already sent this edition" in again.output


def test_q_prints_nothing_when_all_went_well_and_everything_when_not(project: Path) -> None:
    hf = str(FEEDS / "hf-daily-papers-2026-06-12.json")
    c = ("--config", str(project))
    assert cli("run", *c).exit_code == 0
    for args in (
        ("status",),
        ("feeds",),
        ("check",),
        ("subscribe", "bo@example.org", "--interests", "robots"),
        ("unsubscribe", "bo@example.org"),
        ("preview", "ada", "--feed", hf, "--out", str(project.parent / "preview")),
        ("vote", "ada@example.org", "2606.00467", "up"),
    ):
        loud = cli(*args, *c)
        assert loud.exit_code == 0 and loud.output, (args, loud.output)
        if args[0] in ("subscribe", "unsubscribe"):  # undone, to be done again with -q
            cli("subscribe" if args[0] == "unsubscribe" else "unsubscribe", *args[1:2], *c)
        quiet = cli("-q", *args, *c)
        assert quiet.exit_code == 0 and quiet.output == "", (args, quiet.output)
    text = project.read_text()
    project.write_text(text + '\n[[feeds]]\nname = "gone"\nurl = "missing.json"\n')
    assert cli("fetch", "-q", *c).exit_code == 1
    for args in (("status",), ("feeds",)):  # a failing feed: the whole report, -q or not
        quiet = cli("-q", *args, *c)
        assert quiet.exit_code == 1 and "gone: " in quiet.output
        assert quiet.output == cli(*args, *c).output


def test_each_message_refused_or_deferred_is_said_once(project: Path) -> None:
    cwd = project.parent
    write_subscriber(cwd / "subscribers", "bo", 'email = "bo@example.org"\ninterests = "LLMs"')
    text = project.read_text()
    with SmtpServer(reject={"bo@example.org"}, temp_fail={"ada@example.org": 9}) as srv:
        project.write_text(
            text + f'\n[smtp]\nhost = "127.0.0.1"\nport = {srv.port}\nsecurity = "none"\n'
            "retries = 0\n"
        )
        out = digest("run", "--config", str(project), cwd=cwd)
    assert out.returncode == 1
    said = (out.stdout + out.stderr).splitlines()
    assert [ln for ln in said if "no such user" in ln] == [
        "  failed: bo@example.org: 550 5.1.1 <bo@example.org>: no such user here"
    ], said
    assert [ln for ln in said if "try again later" in ln] == [
        "  deferred: ada@example.org: 451 4.7.1 <ada@example.org>: try again later"
    ], said
    # A relay that is not one stops the run: one line says why, not one more per message.
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        port = silent.getsockname()[1]
        project.write_text(
            text + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
            "timeout = 0.5\n"
        )
        stopped = digest("run", "--no-fetch", "--config", str(project), cwd=cwd)  # ada again
    assert stopped.returncode == 1
    assert stopped.stderr.count("no SMTP greeting within 0.5 s") == 1, stopped.stderr


def test_a_missing_unsubscribe_url_is_a_note_of_check_not_a_warning_of_every_command(
    project: Path,
) -> None:
    cwd = project.parent
    with SmtpServer() as srv:
        project.write_text(
            project.read_text()
            + f'\n[smtp]\nhost = "127.0.0.1"\nport = {srv.port}\nsecurity = "none"\n'
        )
        check = digest("check", "--config", str(project), cwd=cwd)
        assert check.stdout.count("note: [unsubscribe] url is not set") == 1
        for args in (("run",), ("status",), ("subscribers",)):
            out = digest(*args, "--config", str(project), cwd=cwd)
            assert "[unsubscribe] url" not in out.stdout + out.stderr, args
        assert len(srv.messages) == 1


def test_skipped_subscribers_are_named_with_when_they_are_due(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project.parent / "subscribers"
    write_subscriber(
        folder,
        "bo",
        'email = "bo@example.org"\ninterests = "robots"\ntimezone = "Europe/Paris"\nsend_hour = 9',
    )
    write_subscriber(
        folder, "cy", 'email = "cy@example.org"\ninterests = "x"\nfrequency = "weekly"\n'
    )
    cfg = load(project)
    friday_7 = datetime(2026, 6, 12, 5, 10, tzinfo=UTC)  # 07:10 in Paris
    with run_lock(cfg):
        summary = run(cfg, now=lambda: friday_7)
    print_run_summary(cfg, summary)
    out = capsys.readouterr().out
    assert "  1 subscriber(s) skipped: not due yet (send_hour)\n" in out
    assert "    bo@example.org: at 09:00 Europe/Paris on Fri 12 Jun, in 1 h 50 min\n" in out
    assert "  1 subscriber(s) skipped: weekly, not their day\n" in out
    assert "    cy@example.org: weekly on monday: at the first run on Mon 15 Jun\n" in out


# ---------------------------------------------------------------- status and preview


def test_status_forgets_errors_of_files_since_removed_or_fixed(project: Path) -> None:
    folder = project.parent / "subscribers"
    broken = write_subscriber(folder, "zz", 'email = "zz@example.org"\nmax_paper = 3\n')
    other = write_subscriber(folder, "yy", 'email = "yy@example.org"\ninterests = 3\n')
    cfg = load(project)
    with run_lock(cfg):
        run(cfg, now=lambda: datetime(2026, 6, 12, 7, tzinfo=UTC))
    before = cli("status", "--config", str(project))
    assert before.exit_code == 1
    assert before.output.count("subscriber failed: ") == 2
    broken.unlink()
    other.write_text('email = "yy@example.org"\ninterests = "robots"\n')
    after = cli("status", "--config", str(project))
    assert after.exit_code == 0, after.output
    assert f"subscriber failed: {broken}: max_paper: unknown key" in after.output
    assert "(file removed since)" in after.output and "(reads fine now)" in after.output


def test_preview_open_without_a_browser_says_where_the_file_is(project: Path) -> None:
    cwd = project.parent
    bare = {"PATH": str(Path(sys.executable).parent), "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    out = digest(
        "preview",
        "ada",
        "--feed",
        str(FEEDS / "hf-daily-papers-2026-06-12.json"),
        "--out",
        "preview",
        "--open",
        "--config",
        str(project),
        cwd=cwd,
        BROWSER="",
        **bare,
    )
    assert out.returncode == 1, out.stderr
    assert "--open: no web browser found here; open file://" in out.stderr
    assert (cwd / "preview" / "ada.html").is_file()


# ---------------------------------------------------------------- digest init


def test_init_makes_a_folder_to_run_from_and_overwrites_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = cli("init", "lab")
    assert out.exit_code == 0, out.output
    lab = tmp_path / "lab"
    assert (lab / "config.toml").read_text() == (ROOT / "config.toml").read_text()
    you = lab / "subscribers" / "you.toml"
    assert 'email = "you@example.org"' in you.read_text() and (lab / "outbox").is_dir()
    assert "created lab/subscribers/you.toml" in out.output
    assert "1. lab/subscribers/you.toml: your address and what you work on" in out.output
    assert "3. cd lab, then: digest check" in out.output
    check = cli("check", "--config", str(lab / "config.toml"))
    assert check.exit_code == 0, check.output  # valid as written, mail goes to outbox/
    assert "note: 1 subscriber at an example address (you@example.org" in check.output
    again = cli("init", "lab", "--email", "ada@lab.example.org")
    assert again.exit_code == 2 and "lab/config.toml exists" in again.output
    assert not (lab / "subscribers" / "ada.toml").exists()
    mine = cli("init", "mine", "--email", "Ada@Lab.example.org", "--name", 'Ada "A." L')
    assert mine.exit_code == 0, mine.output
    ada = load_profile(tmp_path / "mine" / "subscribers" / "ada.toml")
    assert (ada.email, ada.name) == ("Ada@lab.example.org", 'Ada "A." L')
    assert "1. mine/subscribers/ada.toml: what you work on (interests, keywords)" in mine.output
    bad = cli("init", "other", "--email", "ada@lab")
    assert bad.exit_code == 2 and not (tmp_path / "other" / "config.toml").exists()
    for args in (("init", "q1", "-q"), ("-q", "init", "q2")):  # -q, like every command
        quiet = cli(*args)
        assert quiet.exit_code == 0 and quiet.output == "", (args, quiet.output)
    assert (tmp_path / "q1" / "subscribers" / "you.toml").is_file()
    assert (tmp_path / "q2" / "config.toml").is_file()


def test_the_checkout_config_and_the_one_init_writes_are_the_same() -> None:
    """digest init writes digest/skeleton/config.toml; a checkout's is config.toml: one text
    (after changing one, copy it over the other)."""
    assert (ROOT / "digest" / "skeleton" / "config.toml").read_text() == (
        ROOT / "config.toml"
    ).read_text()
    assert sorted(p.name for p in (ROOT / "subscribers").iterdir()) == ["README.md"]
