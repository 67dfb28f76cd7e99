"""The operations commands: schedule, subscribe, unsubscribe, subscribers, vote, status."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from ..clock import utcnow
from ..config import Config
from ..delivery import config_notes
from ..errors import ConfigError
from ..store import Store
from ._common import EXIT_OK, EXIT_PARTIAL, Output, common, log


def _fmt(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "never"


@click.command()
@common(chatty=True)
@click.option("--run-now", is_flag=True, help="Also run once right away, then on schedule.")
@click.option("--cron-seconds", hidden=True, help="Testing: a cron field for seconds instead.")
def schedule(cfg: Config, run_now: bool, cron_seconds: str | None) -> None:
    """Run in the foreground and send on [schedule] (cron + timezone) until stopped.

    SIGTERM or Ctrl-C stops it cleanly: the run in progress finishes the message in flight,
    the rest goes out on the next run. A second Ctrl-C exits at once.
    """
    from ..schedule import cron_trigger, serve, stop_on_signals

    trigger = cron_trigger(cfg.schedule, seconds=cron_seconds, where=cfg.path)  # bad: exit 2
    for note in config_notes(cfg):  # once, when the service starts
        log.warning("%s", note)
    stop = threading.Event()
    stop_on_signals(stop)
    serve(cfg, stop, trigger=trigger if cron_seconds else None, run_now=run_now)
    sys.exit(EXIT_OK)


@click.command()
@common
@click.option("--host", help="Listen address (default: [web] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen port (default: [web] port).")
def serve(cfg: Config, host: str | None, port: int | None) -> None:
    """Serve the subscribers' pages: sign-up, preferences, votes, unsubscribe."""
    from ..web import serve as serve_web

    if not cfg.web.base_url:
        raise ConfigError(
            f"{cfg.path}: [web] base_url is empty; set the public address of the pages, "
            'e.g. base_url = "https://papers.example.org" (http://127.0.0.1:8080 to try it)'
        )
    serve_web(cfg, host=host, port=port)


@click.command()
@common
@click.argument("email")
@click.option("--name", default="", help="Their name, used in the greeting.")
@click.option("--interests", default="", help="Free text: what they want to read about.")
@click.option("--keyword", "-k", "keywords", multiple=True, help="A word or phrase (repeatable).")
@click.option("--timezone", help="IANA timezone for send_hour, e.g. Europe/Paris.")
@click.option("--send-hour", type=click.IntRange(0, 23), help="Local hour to receive it (0-23).")
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), help="Default: daily.")
@click.option("--weekday", help="For weekly: the day it arrives (default monday).")
@click.option("--max-papers", type=click.IntRange(1, 100), help="Papers per digest (default 10).")
def subscribe(
    cfg: Config,
    out: Output,
    email: str,
    name: str,
    interests: str,
    keywords: tuple[str, ...],
    timezone: str | None,
    send_hour: int | None,
    frequency: str | None,
    weekday: str | None,
    max_papers: int | None,
) -> None:
    """Add a subscriber (writes subscribers/<name>.toml), or re-subscribe someone."""
    from ..subscribers import subscribe as add

    settings = {
        "timezone": timezone,
        "send_hour": send_hour,
        "frequency": frequency,
        "weekday": weekday,
        "max_papers": max_papers,
    }
    store = Store(cfg.database_url)
    try:
        done = add(
            cfg,
            store,
            email,
            now=utcnow(),
            name=name,
            interests=interests,
            keywords=keywords,
            settings=settings,
        )
    finally:
        store.close()
    out.say(f"{done.action}: {email} ({done.path})")


@click.command()
@common
@click.argument("email")
@click.option("--reason", default="", help="Recorded with the suppression.")
@click.option(
    "--force", is_flag=True, help="Suppress an address no file has and no digest went to."
)
def unsubscribe(cfg: Config, email: str, reason: str, force: bool, out: Output) -> None:
    """Stop sending to EMAIL: active = false in their file and a suppression in the database."""
    from ..subscribers import unsubscribe as remove

    store = Store(cfg.database_url)
    try:
        path = remove(cfg, store, email, now=utcnow(), reason=reason, unknown_ok=force)
    finally:
        store.close()
    if path is None:
        out.say(f"unsubscribed: {email} (no subscriber file has it; suppression recorded)")
    else:
        out.say(f"unsubscribed: {email} ({path}: active = false)")


@click.command()
@common
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--show", "show", metavar="EMAIL", help="One subscriber in full, with their votes.")
def subscribers(cfg: Config, as_json: bool, show: str | None) -> None:
    """List subscribers: status, frequency, last edition sent and papers sent."""
    from ..subscribers import subscriber_rows

    if show:
        _show_subscriber(cfg, show, as_json)
        return
    store = Store(cfg.database_url)
    try:
        rows, errors = subscriber_rows(cfg, store)
    finally:
        store.close()
    if as_json:
        out = [
            {
                "email": r.profile.email,
                "name": r.profile.name,
                "file": str(r.profile.path),
                "status": r.status,
                "timing": r.timing,
                "last_edition": r.last_edition.isoformat() if r.last_edition else None,
                "digests_sent": r.digests,
                "papers_sent": r.papers,
            }
            for r in rows
        ]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        table = [("EMAIL", "STATUS", "WHEN", "LAST EDITION", "DIGESTS", "PAPERS", "FILE")]
        table += [
            (
                r.profile.email,
                r.status,
                r.timing,
                r.last_edition.isoformat() if r.last_edition else "-",
                str(r.digests),
                str(r.papers),
                r.profile.path.name if r.profile.path else "",
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            click.echo(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no subscribers")
    for err in errors:
        click.echo(f"  broken: {err}", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


_WHERE = {
    "database": "vote",
    "liked": "liked",
    "disliked": "disliked",
    "liked_file": "liked_file",
    "disliked_file": "disliked_file",
}


def _show_subscriber(cfg: Config, name: str, as_json: bool) -> None:
    """``digest subscribers --show``: one subscriber's file, status and votes."""
    from ..subscribers import find_profile, subscriber_rows, subscriber_votes

    profile = find_profile(cfg.subscribers_path, name)
    store = Store(cfg.database_url)
    try:
        rows, _ = subscriber_rows(cfg, store)
        row = next((r for r in rows if r.profile.email.lower() == profile.email.lower()), None)
        votes = subscriber_votes(profile, store)
    finally:
        store.close()
    if as_json:
        out = {
            "email": profile.email,
            "name": profile.name,
            "file": str(profile.path),
            "status": row.status if row else "",
            "timing": row.timing if row else "",
            "last_edition": row.last_edition.isoformat() if row and row.last_edition else None,
            "digests_sent": row.digests if row else 0,
            "papers_sent": row.papers if row else 0,
            "votes": [
                {
                    "vote": "up" if v.value > 0 else "down",
                    "id": v.paper_id or None,
                    "title": v.title or None,
                    "from": v.where,
                    "at": v.at.isoformat() if v.at else None,
                }
                for v in votes
            ],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    click.echo(f"{profile.email}" + (f" ({profile.name})" if profile.name else ""))
    click.echo(f"  file: {profile.path}")
    if row is not None:
        last = row.last_edition.isoformat() if row.last_edition else "never"
        click.echo(f"  status: {row.status}; {row.timing}")
        click.echo(f"  sent: {row.digests} digests, {row.papers} papers; last edition {last}")
    ups = sum(v.value > 0 for v in votes)
    click.echo(f"  votes: {ups} up, {len(votes) - ups} down (the ranking learns from them)")
    for v in votes:
        what = v.paper_id or "(BibTeX)"
        title = f"  {v.title}" if v.title else ""
        when = f"  {_fmt(v.at)}" if v.at else ""
        click.echo(
            f"    {'up' if v.value > 0 else 'down':<4}  {_WHERE[v.where]:<13}  {what}{title}{when}"
        )


@click.command()
@common
@click.argument("email")
@click.argument("paper")
@click.argument("value", type=click.Choice(["up", "down", "clear"]))
def vote(cfg: Config, out: Output, email: str, paper: str, value: str) -> None:
    """Record EMAIL's vote on PAPER (an arXiv id or link): up, down, or clear it.

    The ranking learns what each subscriber likes from their votes (and from liked and
    disliked papers in their file); the web app records the votes cast from the email."""
    from ..sources import arxiv_id
    from ..subscribers import find_profile

    profile = find_profile(cfg.subscribers_path, email)
    pid = arxiv_id(paper) or paper.strip()
    if not pid:
        raise click.BadParameter("give an arXiv id, e.g. 2506.21576", param_hint="PAPER")
    store = Store(cfg.database_url)
    try:
        known = store.get_papers([pid])
        store.set_vote(
            profile.email, pid, {"up": 1, "down": -1, "clear": 0}[value], utcnow(), source="cli"
        )
    finally:
        store.close()
    title = f" ({known[0].title})" if known else ""
    done = "cleared the vote of" if value == "clear" else f"voted {value}:"
    out.say(f"{profile.email}: {done} {pid}{title}")
    if not known and value != "clear":
        out.problem(
            f"digest: warning: {pid} is not in the database yet; the vote counts once a "
            "feed brings the paper (digest fetch)"
        )


@click.command()
@common
def status(cfg: Config, out: Output) -> None:
    """Last run, next scheduled run, feed health, and the last edition's deliveries.

    Exits 1 when something needs attention (a failed run, a failing feed, a failed or
    deferred delivery), so it can feed a monitor; with -q, prints only then.
    """
    lines: list[str] = []
    store = Store(cfg.database_url)
    try:
        problems = _status(cfg, store, utcnow(), lines.append)
    finally:
        store.close()
    for line in lines:
        (click.echo if problems else out.say)(line)
    sys.exit(EXIT_PARTIAL if problems else EXIT_OK)


def _status(cfg: Config, store: Store, now: datetime, echo: Callable[[str], None]) -> int:
    problems = 0
    last = store.last_run()
    if last is None:
        echo("last run: never")
    else:
        started, finished, d = last
        if finished is None:
            state = "running now" if _lock_held(cfg) else "did not finish (killed or crashed?)"
            problems += state != "running now"
            echo(f"last run: started {_fmt(started)}, {state}")
        else:
            took = (finished - started).total_seconds()
            ok = d.get("ok", True)
            echo(f"last run: {_fmt(started)} ({took:.1f} s), {'ok' if ok else 'WITH PROBLEMS'}")
            echo(f"  {_run_line(d)}")
            for name, reason in d.get("feed_errors", []):
                echo(f"  feed failed: {name}: {reason}")  # the feeds' state now: below
            for err in d.get("profile_errors", []):
                now_ = _profile_error_now(err)
                problems += now_ == ""
                echo(f"  subscriber failed: {err}{now_}")
    from ..schedule import next_run

    nxt = next_run(cfg, now)
    echo(
        f"next scheduled run: {_fmt(nxt)} "
        f"([schedule] cron {cfg.schedule.cron!r} {cfg.schedule.timezone}; used by digest schedule)"
    )
    states = {s.name: s for s in store.feed_states()}
    echo("feeds:")
    for feed in cfg.feeds:
        st = states.get(feed.name)
        off = "" if feed.enabled else " (disabled)"
        if st is None or st.last_attempt is None:
            echo(f"  {feed.name}: never fetched{off}")
            continue
        if st.failures:
            problems += feed.enabled
            echo(
                f"  {feed.name}: FAILING ({st.failures} in a row, last success "
                f"{_fmt(st.last_success)}): {st.last_error}{off}"
            )
        else:
            echo(f"  {feed.name}: ok, {st.last_count} papers at {_fmt(st.last_success)}{off}")
    edition = store.last_delivered_edition()
    if edition is None:
        echo("deliveries: none yet")
        return problems
    counts = store.delivery_counts(edition)
    echo(
        f"deliveries of edition {edition}: "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    )
    for dlv in store.deliveries(edition):
        if dlv.status in ("failed", "deferred", "sending"):
            problems += 1
            echo(f"  {dlv.status}: {dlv.email}: {dlv.reply or '(no reply)'}")
    return problems


def _profile_error_now(error: str) -> str:
    """What became of a subscriber file a run reported: "" while it is still broken, else
    a note (removed, or reads fine now)."""
    from pathlib import Path

    from ..errors import ProfileError
    from ..subscribers import load_profile

    path = Path(error.split(": ", 1)[0])
    if path.suffix != ".toml":
        return ""
    if not path.exists():
        return " (file removed since)"
    if "is already used by" in error:
        return ""  # reads fine alone: only the next run can tell
    try:
        load_profile(path)
    except ProfileError:
        return ""
    return " (reads fine now)"


def _run_line(d: dict[str, Any]) -> str:
    editions = d.get("editions") or [d.get("edition")]
    parts = [
        f"edition {', '.join(str(e) for e in editions)}",
        f"{d.get('due', '?')} due",
        f"{d.get('sent', 0)} sent",
        f"{d.get('deferred_total', len(d.get('deferred', [])))} deferred",
        f"{d.get('failed_total', len(d.get('failed', [])))} failed",
        f"{d.get('new_papers', 0)} new papers",
    ]
    for why, n in sorted((d.get("skipped") or {}).items()):
        parts.append(f"{n} {why}")
    if d.get("stopped"):
        parts.append("stopped early")
    return "; ".join(parts)


def _lock_held(cfg: Config) -> bool:
    from filelock import FileLock, Timeout

    if not cfg.lock_path.parent.is_dir():
        return False
    lock = FileLock(str(cfg.lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
