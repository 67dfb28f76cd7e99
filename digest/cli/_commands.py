"""The commands of one edition: run, fetch, rank, preview, check and feeds.

Each command imports the stages it needs when it runs, so ``digest check`` or ``digest
feeds`` start without loading the ranking model's libraries.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import threading
import webbrowser
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..delivery import check_config, config_notes
from ..errors import ConfigError, DigestError
from ..models import Digest, Profile
from ._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    Output,
    common,
    log,
    parse_edition,
    reported_failures,
)


@click.command()
@common
@click.option(
    "--edition", callback=parse_edition, help="Re-run or backfill one edition (YYYY-MM-DD)."
)
@click.option("--no-fetch", is_flag=True, help="Use stored papers only; do not fetch feeds.")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for another run to finish.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    help="Processes sharing the edition (one per core; others may run on other machines).",
)
@click.option("--worker", type=int, default=0, hidden=True, help="Internal: one of N workers.")
def run(
    cfg: Config,
    edition: date | None,
    no_fetch: bool,
    wait: float,
    workers: int,
    worker: int,
    out: Output,
) -> None:
    """Fetch, rank, render and send one edition."""
    from ..pipeline import run as run_edition
    from ..pipeline import run_lock
    from ..schedule import stop_on_signals

    # When the process ends, its last garbage collection would walk every object the run
    # made (a second of CPU at 10,000 subscribers) only to free what the exit frees anyway.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    check_config(cfg)
    for note in config_notes(cfg):  # `digest check` lists them; every run would be noise
        log.info("note: %s", note)
    reported_failures()
    stop = threading.Event()
    stop_on_signals(stop)  # Ctrl-C / SIGTERM: finish the message in flight, keep the rest
    if worker:  # started by --workers: the parent holds the lock and fetched the feeds
        from ._workers import share_rates

        summary = run_edition(share_rates(cfg, worker), edition=edition, fetch=False, stop=stop)
    elif workers > 1:
        from ._workers import run_workers

        with run_lock(cfg, wait=wait):
            if not no_fetch:
                _fetch_before_workers(cfg, out)
            flags = ["-q"] if out.quiet else ["-v"] * min(out.verbose, 2)
            sys.exit(run_workers(cfg, workers, edition, stop, flags))
    else:
        with run_lock(cfg, wait=wait):
            summary = run_edition(cfg, edition=edition, fetch=not no_fetch, stop=stop)
    print_run_summary(cfg, summary, out)
    sys.exit(EXIT_OK if summary.ok else EXIT_PARTIAL)


def _fetch_before_workers(cfg: Config, out: Output) -> None:
    from ..clock import utcnow
    from ..sources import fetch_all
    from ..store import Store

    store = Store(cfg.database_url)
    try:
        f = fetch_all(cfg, store, utcnow)
    finally:
        store.close()
    say = out.say if not f.errors else click.echo
    say(
        f"feeds: {len(f.ok)} fetched, {len(f.not_modified)} unchanged, {len(f.errors)} failed; "
        f"{f.new} new papers"
    )
    for name, reason in f.errors:
        out.problem(f"  feed failed: {name}: {reason}")


def print_run_summary(cfg: Config, summary: Any, out: Output | None = None) -> None:
    """The run's report: what went out, who was skipped and why, and every failure (on
    stderr). With -q, nothing when all went well, and all of it when anything did not."""
    from ..subscribers import NOT_DUE, NOT_THEIR_DAY

    out = out if out is not None and summary.ok else Output()
    say, problem = out.say, out.problem
    f = summary.fetch
    if f is not None:
        say(
            f"feeds: {len(f.ok)} fetched, {len(f.not_modified)} unchanged, {len(f.errors)} failed; "
            f"{f.new} new papers"
        )
        for name, reason in f.errors:
            problem(f"  feed failed: {name}: {reason}")
    skipped: dict[str, int] = summary.skipped_counts()
    if summary.due or summary.candidates:
        say(f"edition {summary.edition}: {summary.candidates} candidate papers")
    elif skipped or summary.profile_errors:
        say(f"edition {summary.edition}: nobody is due now; nothing fetched or sent")
    else:
        say(
            f"edition {summary.edition}: nothing fetched or sent: no subscriber in "
            f"{cfg.subscribers_path}; add one with digest subscribe EMAIL --interests TEXT"
        )
    for edition, n in sorted(summary.no_papers.items()):
        say(
            f"  {n} subscriber(s) not sent edition {edition}: no candidate papers yet; "
            "the first run that has some sends it"
        )
    for p in summary.picks[:50]:
        say(f"  {p.email}: {p.count} papers, top: {p.top[:70]}")
    if summary.picks.total > 50:  # the summary's lists keep a sample; .total counts all
        say(f"  ... and {summary.picks.total - 50} more subscribers")
    for email in summary.nothing[:20]:
        say(f"  {email}: nothing above their threshold today")
    when = dict(summary.waiting)
    for why, n in sorted(skipped.items()):
        say(f"  {n} subscriber(s) skipped: {why}")
        if why in (NOT_DUE, NOT_THEIR_DAY):  # who, and when they get theirs
            shown = [e for e, w in summary.skipped if w == why and e in when][:5]
            for email in shown:
                say(f"    {email}: {when[email]}")
            if n > len(shown):
                say(f"    ... and {n - len(shown)} more (digest subscribers: when each gets it)")
    for err in summary.profile_errors:
        problem(f"  subscriber failed: {err}")
    if summary.profile_errors.more:
        problem(f"  ... and {summary.profile_errors.more} more subscriber files failed")
    d = summary.delivery
    if d is not None:
        where = cfg.outbox_path if not cfg.smtp.host else f"{cfg.smtp.host}:{cfg.smtp.port}"
        say(
            f"delivery via {where}: {d.sent.total} sent, {d.deferred.total} deferred, "
            f"{d.failed.total} failed"
        )
        if d.elsewhere:
            say(f"  {d.elsewhere.total} being sent by another run at the same time")
        if d.given_up:
            problem(
                f"  {d.given_up.total} not sent again: an earlier run gave up on them "
                "(outcome unknown; digest status lists them)"
            )
        for email, reason in d.deferred:
            problem(f"  deferred: {email}: {reason}")
        for email, reason in d.failed:
            problem(f"  failed: {email}: {reason}")
        if d.deferred.more or d.failed.more:
            problem(f"  ... and {d.deferred.more + d.failed.more} more (digest status lists them)")
    if summary.left:
        problem(f"stopped before the end: {summary.left} subscriber(s) left for the next run")
    went_out = d is not None and (d.sent or d.deferred or d.failed)
    already = skipped.get("already sent this edition", 0)
    if already and not went_out and not summary.picks:
        say(
            f"nothing new to send: edition {summary.edition} already went to {already} "
            "subscriber(s)"
        )


@click.command()
@common
@click.option("--feed", "feed_url", help="Parse one feed (path or URL) without storing it.")
@click.option("--json", "as_json", is_flag=True, help="With --feed: print the papers as JSON.")
def fetch(cfg: Config, feed_url: str | None, as_json: bool, out: Output) -> None:
    """Fetch every configured feed into the database (or inspect one feed)."""
    from ..clock import utcnow
    from ..sources import fetch_all
    from ..store import Store

    if feed_url:
        papers = _fetch_one(cfg, feed_url)
        if as_json:
            from ..sources import paper_json

            click.echo(json.dumps([paper_json(p) for p in papers], indent=2, ensure_ascii=False))
        else:
            for p in papers:
                up = f" [{p.upvotes} upvotes]" if p.upvotes is not None else ""
                click.echo(f"{p.id}  {p.title}{up}")
            click.echo(f"{len(papers)} papers", err=True)
        return
    reported_failures()
    store = Store(cfg.database_url)
    try:
        summary = fetch_all(cfg, store, utcnow)
    finally:
        store.close()
    for name, n in summary.ok:
        out.say(f"{name}: {n} papers")
    for name in summary.not_modified:
        out.say(f"{name}: unchanged since last fetch")
    for name, reason in summary.errors:
        out.problem(f"{name}: FAILED: {reason}")
    out.say(f"{summary.new} new papers, {summary.updated} updated")
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)


def _fetch_one(cfg: Config, url: str) -> list[Any]:
    from ..config import Feed
    from ..sources import Fetcher

    configured = {f.name: f for f in cfg.feeds}
    feed = configured.get(url) or Feed(name=url, url=url)
    if "://" not in feed.url:
        feed = feed.model_copy(
            update={
                "url": str(Path(feed.url).resolve())
                if Path(feed.url).exists()
                else cfg.feed_base(feed.url)
            }
        )
    with Fetcher(cfg.http, cfg.sender.address) as fetcher:
        return list(fetcher.fetch(feed).papers)


@click.command()
@common
@click.option(
    "--smtp",
    "relay",
    is_flag=True,
    help="Also connect to [smtp] host: TLS, login and the sender, then quit (nothing is sent).",
)
def check(cfg: Config, relay: bool, out: Output) -> None:
    """Validate config.toml, the secrets it names and every subscriber file; say what was
    checked and what was not. Exit 2 for a config problem, 1 for anything else wrong."""
    from ..delivery import check_relay, unsubscribe_base
    from ..subscribers import load_profiles, subscribers_missing

    check_config(cfg, strict=True)  # a config problem: exit 2, before any "OK"
    say, problem = out.say, out.problem
    off = sum(not f.enabled for f in cfg.feeds)
    say(
        f"{cfg.path}: valid; {len(cfg.feeds)} feeds"
        + (f" ({off} disabled)" if off else "")
        + f", database {cfg.database_url}"
    )
    c = cfg.smtp
    if c.host:
        login = f"login {c.user}, password in {c.password_env}: set" if c.user else "no login"
        say(f"sending: SMTP {c.host}:{c.port}, security {c.security}, {login}")
    else:
        say(f"sending: none; messages are written to {cfg.outbox_path} ([smtp] host is empty)")
    base = unsubscribe_base(cfg)
    say(
        f"unsubscribe: one-click {base}, links signed with {cfg.link_secret_env}: set"
        if base
        else "unsubscribe: mailto only ([unsubscribe] url is empty)"
    )
    if cfg.dkim.selector or cfg.dkim.domain or cfg.dkim.private_key_file:
        say(f"dkim: {cfg.dkim.selector}._domainkey.{cfg.dkim.domain}, key read and tried")
    ok = True
    if not cfg.subscribers_path.is_dir():
        raise ConfigError(subscribers_missing(cfg))
    ledger = _ledger(cfg)
    try:
        profiles, errors = load_profiles(cfg.subscribers_path, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    paused = sum(not p.active for p in profiles)
    say(
        f"{cfg.subscribers_path}: {len(profiles)} subscribers OK, {len(errors)} broken"
        + (f"; {paused} of them with active = false (paused or unsubscribed)" if paused else "")
    )
    for err in errors:
        ok = False
        problem(f"  broken: {err}")
    if len(profiles) == paused:
        ok = False
        problem(
            f"  no {'active ' if paused else ''}subscriber in {cfg.subscribers_path}: nobody "
            "gets a digest; add one with digest subscribe EMAIL --interests TEXT"
        )
    for note in config_notes(cfg):
        say(f"note: {note}")
    if _example_domain(cfg.sender.address):
        say(
            f"note: [sender] address {cfg.sender.address} is an example address: put yours "
            "before sending (mail from it goes unanswered, or is refused as spam)"
        )
    examples = [p for p in profiles if _example_domain(p.email)]
    if examples:
        named = ", ".join(
            f"{p.email} in {p.path.name if p.path else '?'}" for p in examples[:3]
        ) + (", ..." if len(examples) > 3 else "")
        say(
            f"note: {len(examples)} subscriber{'s' if len(examples) > 1 else ''} at an example "
            f"address ({named}): put real addresses before sending"
        )
    unchecked = ["the feeds (digest fetch tries each)"]
    if relay and not c.host:
        say("smtp: nothing to connect to: [smtp] host is empty (messages go to the outbox)")
    elif relay:
        try:
            say(f"smtp: {check_relay(cfg, cfg.smtp_password())}")
        except DigestError as exc:
            ok = False
            problem(f"smtp: FAILED: {exc}")
    elif c.host:
        unchecked.insert(0, "the SMTP relay (digest check --smtp connects and logs in)")
    if not cfg.database_url.startswith("sqlite"):
        unchecked.append("the database server (digest db status connects to it)")
    if cfg.dkim.selector:
        unchecked.append(f"the DNS record {cfg.dkim.selector}._domainkey.{cfg.dkim.domain}")
    say(f"not checked: {'; '.join(unchecked)}")
    sys.exit(EXIT_OK if ok else EXIT_PARTIAL)


def _example_domain(email: str) -> bool:
    """An address at a domain reserved for examples (RFC 2606): mail there goes nowhere."""
    domain = email.rpartition("@")[2].lower()
    return any(
        domain == d or domain.endswith("." + d)
        for d in ("example.org", "example.com", "example.net", "example", "invalid", "test")
    )


def _ledger(cfg: Config) -> Any:
    """The database, when it already exists (which file keeps an address that two files
    give); None otherwise: ``digest check`` creates nothing."""
    from ..store import Store

    prefix = "sqlite:///"
    url = cfg.database_url
    if url.startswith(prefix) and not Path(url[len(prefix) :]).is_file():
        return None
    if not url.startswith("sqlite"):
        return None  # checking a server database's connection is not this command's job
    return Store(url)


def _edition_picker(cfg: Config, feeds: tuple[str, ...], edition: date | None) -> Any:
    """A ``Picker`` over the papers of ``feeds``, or else of the stored edition."""
    from ..clock import utcnow
    from ..ranking import Picker, Ranker
    from ..store import Store
    from ..subscribers import edition_for

    now = utcnow()
    ed = edition or edition_for(cfg, now)
    store = Store(cfg.database_url)
    if feeds:
        papers: list[Any] = []
        seen: set[str] = set()
        for url in feeds:
            for p in _fetch_one(cfg, url):
                if p.id not in seen:
                    seen.add(p.id)
                    papers.append(p)
    else:
        papers = store.edition_papers(ed, now, create=False)
        if not papers:
            raise DigestError(
                f"no stored papers for edition {ed}; run 'digest fetch' first or pass --feed"
            )
    return Picker(Ranker(cfg.ranking), store, ed, papers, now)


def _profile(cfg: Config, name: str) -> Profile:
    from ..subscribers import find_profile

    return find_profile(cfg.subscribers_path, name)


@click.command()
@common
@click.option("--subscriber", "-s", required=True, help="Subscriber file, its name, or email.")
@click.option("--feed", "feeds", multiple=True, help="Rank this feed's papers (repeatable).")
@click.option("--top", type=click.IntRange(1, 1000), help="How many papers (default: max_papers).")
@click.option("--edition", callback=parse_edition, help="Edition date (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rank(
    cfg: Config,
    subscriber: str,
    feeds: tuple[str, ...],
    top: int | None,
    edition: date | None,
    as_json: bool,
) -> None:
    """Rank papers for one subscriber and show why each was picked."""
    profile = _profile(cfg, subscriber)
    picker = _edition_picker(cfg, feeds, edition)
    picks = picker.pick(profile, top=top)
    if as_json:
        rows = [
            {
                "id": s.paper.arxiv_id or s.paper.id,
                "title": s.paper.title,
                "score": round(s.score, 4),
                "reasons": list(s.reasons),
                "url": s.paper.url,
            }
            for s in picks
        ]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(f"{profile.email}: {len(picks)} of {len(picker.by_id)} papers")
    for i, s in enumerate(picks, 1):
        click.echo(f"{i:2}. {s.score:6.3f}  {s.paper.title}")
        click.echo(f"            {s.paper.url}")
        if s.reasons:
            click.echo(f"            why: {'; '.join(s.reasons)}")


@click.command()
@common
@click.argument("subscriber", required=False)
@click.option("--all", "all_", is_flag=True, help="Preview every subscriber.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("preview"),
    show_default=True,
    help="Folder to write into.",
)
@click.option(
    "--feed", "feeds", multiple=True, help="Use this feed's papers instead of stored ones."
)
@click.option("--edition", callback=parse_edition, help="Edition date (default: today).")
@click.option("--open", "open_", is_flag=True, help="Open the HTML in a browser.")
def preview(
    cfg: Config,
    subscriber: str | None,
    all_: bool,
    out_dir: Path,
    feeds: tuple[str, ...],
    edition: date | None,
    open_: bool,
    out: Output,
) -> None:
    """Write a subscriber's digest as .html, .txt and .eml without sending it."""
    from ..delivery import build_message, unsubscribe_url
    from ..subscribers import load_profiles

    if bool(subscriber) == all_:
        raise click.UsageError("give one SUBSCRIBER or --all")
    if all_:
        profiles, errors = load_profiles(cfg.subscribers_path)
        for err in errors:
            click.echo(f"digest: warning: {err}", err=True)
    else:
        assert subscriber is not None
        profiles, errors = [_profile(cfg, subscriber)], []
    from ..rendering import Renderer

    picker = _edition_picker(cfg, feeds, edition)
    renderer = Renderer(cfg)
    renderer.begin_edition(picker.corpus.papers)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Profile, Path, int]] = []
    from ..pipeline import web_link
    from ..tokens import MANAGE, VIEW, VOTE

    tokens = cfg.link_tokens() if cfg.web.base_url else None
    for profile in profiles:
        picks = picker.pick(profile)
        unsub = unsubscribe_url(cfg, profile.email)
        links = {}
        if tokens is not None:  # the web app's links, as a run signs them
            web, email, ed = cfg.web.base_url, profile.email, picker.edition
            links["manage_url"] = web_link(web, "/preferences", tokens, MANAGE, email)
            if picks:
                links["view_url"] = web_link(web, "/view", tokens, VIEW, email, ed)
                links["vote_url"] = web_link(web, "/vote", tokens, VOTE, email, ed)
        if picks:
            rendered = renderer.render(
                Digest(profile, picker.edition, tuple(picks)), unsubscribe_url=unsub, **links
            )
        else:
            rendered = renderer.render_empty(
                profile,
                picker.edition,
                unsubscribe_url=unsub,
                manage_url=links.get("manage_url", ""),
            )
        base = out_dir / profile.slug
        base.with_suffix(".html").write_text(rendered.html, encoding="utf-8")
        base.with_suffix(".txt").write_text(rendered.text, encoding="utf-8")
        base.with_suffix(".eml").write_bytes(
            build_message(cfg, profile, picker.edition, rendered, now=picker.now)
        )
        for suffix in (".html", ".txt", ".eml"):
            out.say(str(base.with_suffix(suffix)))
        for note in rendered.notes:
            click.echo(f"  note: {note}", err=True)
        written.append((profile, base, len(picks)))
    target = written[0][1].with_suffix(".html") if written else None
    if all_:
        target = _write_index(out_dir, picker.edition, written)
        out.say(str(target))
    if open_ and target is not None and not _open_in_browser(target):
        click.echo(
            f"digest: --open: no web browser found here; open {target.resolve().as_uri()} "
            "yourself (or copy the folder to a machine with one)",
            err=True,
        )
        sys.exit(EXIT_PARTIAL)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


def _open_in_browser(path: Path) -> bool:
    """Whether a browser was started on ``path`` (without one, say so: not a silent no-op)."""
    try:
        return webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        return False


def _write_index(out_dir: Path, edition: date, written: list[tuple[Profile, Path, int]]) -> Path:
    from html import escape

    rows = "\n".join(
        f'<li><a href="{escape(base.name)}.html">{escape(p.name or p.email)}</a> '
        f"&lt;{escape(p.email)}&gt;: {n} papers "
        f'(<a href="{escape(base.name)}.txt">text</a>, '
        f'<a href="{escape(base.name)}.eml">eml</a>)</li>'
        for p, base, n in written
    )
    index = out_dir / "index.html"
    index.write_text(
        f"<!doctype html><meta charset='utf-8'><title>Digest previews {edition}</title>"
        f"<h1>Digest previews for {edition}</h1><ul>\n{rows}\n</ul>\n",
        encoding="utf-8",
    )
    return index


@click.command()
@common
def feeds(cfg: Config, out: Output) -> None:
    """Show each feed's health: last success, last error, consecutive failures (with -q,
    only when one is failing)."""
    from ..store import Store

    store = Store(cfg.database_url)
    try:
        states = {s.name: s for s in store.feed_states()}
    finally:
        store.close()
    broken = 0
    lines: list[str] = []
    for feed in cfg.feeds:
        st = states.get(feed.name)
        if st is None or st.last_attempt is None:
            lines.append(f"{feed.name}: never fetched ({feed.url})")
            continue
        ok = _ago(st.last_success) if st.last_success else "never"
        line = f"{feed.name}: last success {ok}, {st.last_count} papers"
        if st.failures:
            broken += 1
            line += f"; FAILING ({st.failures} in a row): {st.last_error}"
        elif st.last_error:
            line += f"; last error {_ago(st.last_error_at)}: {st.last_error}"
        if not feed.enabled:
            line += " (disabled)"
        lines.append(line)
    for line in lines:
        (click.echo if broken else out.say)(line)
    sys.exit(EXIT_PARTIAL if broken else EXIT_OK)


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    return when.strftime("%Y-%m-%d %H:%M UTC")
