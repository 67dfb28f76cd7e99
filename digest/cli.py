"""The ``digest`` command: argument parsing, logging, output and exit codes."""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import webbrowser
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import DEFAULT_CONFIG, Config, load
from .errors import DigestError
from .models import Profile
from .send import check_config

log = logging.getLogger("digest")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("digest").setLevel(level)
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "apscheduler", "premailer", "mail.log"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def common(fn: F) -> F:
    """--config and -v on every command; our errors become one line and an exit code."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Configuration file.",
    )
    @click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
    @functools.wraps(fn)
    def wrapper(config_path: Path, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        setup_logging(-1 if quiet else verbose)
        try:
            cfg = load(config_path)
            return fn(cfg, **kwargs)
        except DigestError as exc:
            click.echo(f"digest: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def parse_edition(_ctx: Any, _param: Any, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
def main() -> None:
    """Personalized daily digests of trending research papers, by email."""


@main.command()
@common
@click.option(
    "--edition", callback=parse_edition, help="Re-run or backfill one edition (YYYY-MM-DD)."
)
@click.option("--no-fetch", is_flag=True, help="Use stored papers only; do not fetch feeds.")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for another run to finish.")
def run(cfg: Config, edition: date | None, no_fetch: bool, wait: float) -> None:
    """Fetch, rank, render and send one edition."""
    from .pipeline import run as run_edition
    from .pipeline import run_lock
    from .schedule import stop_on_signals

    check_config(cfg)
    stop = threading.Event()
    stop_on_signals(stop)  # Ctrl-C / SIGTERM: finish the message in flight, keep the rest
    with run_lock(cfg, wait=wait):
        summary = run_edition(cfg, edition=edition, fetch=not no_fetch, stop=stop)
    print_run_summary(cfg, summary)
    sys.exit(EXIT_OK if summary.ok else EXIT_PARTIAL)


def print_run_summary(cfg: Config, summary: Any) -> None:
    echo = click.echo
    f = summary.fetch
    if f is not None:
        echo(
            f"feeds: {len(f.ok)} fetched, {len(f.not_modified)} unchanged, {len(f.errors)} failed; "
            f"{f.new} new papers"
        )
        for name, reason in f.errors:
            echo(f"  feed failed: {name}: {reason}")
    echo(f"edition {summary.edition}: {summary.candidates} candidate papers")
    for p in summary.picks[:50]:
        echo(f"  {p.email}: {p.count} papers, top: {p.top[:70]}")
    if summary.picks.total > 50:  # the summary's lists keep a sample; .total counts all
        echo(f"  ... and {summary.picks.total - 50} more subscribers")
    for email in summary.nothing[:20]:
        echo(f"  {email}: nothing above their threshold today")
    skipped: dict[str, int] = summary.skipped_counts()
    for why, n in sorted(skipped.items()):
        echo(f"  {n} subscriber(s) skipped: {why}")
    for err in summary.profile_errors:
        echo(f"  subscriber failed: {err}")
    if summary.profile_errors.more:
        echo(f"  ... and {summary.profile_errors.more} more subscriber files failed")
    d = summary.delivery
    if d is not None:
        where = cfg.outbox_path if not cfg.smtp.host else f"{cfg.smtp.host}:{cfg.smtp.port}"
        echo(
            f"delivery via {where}: {d.sent.total} sent, {d.deferred.total} deferred, "
            f"{d.failed.total} failed"
        )
        for email, reason in d.deferred:
            echo(f"  deferred: {email}: {reason}")
        for email, reason in d.failed:
            echo(f"  failed: {email}: {reason}")
        if d.deferred.more or d.failed.more:
            echo(f"  ... and {d.deferred.more + d.failed.more} more (digest status lists them)")
    went_out = d is not None and (d.sent or d.deferred or d.failed)
    already = skipped.get("already sent this edition", 0)
    if already and not went_out and not summary.picks:
        echo(
            f"nothing new to send: edition {summary.edition} already went to {already} "
            "subscriber(s)"
        )


@main.command()
@common
@click.option("--feed", "feed_url", help="Parse one feed (path or URL) without storing it.")
@click.option("--json", "as_json", is_flag=True, help="With --feed: print the papers as JSON.")
def fetch(cfg: Config, feed_url: str | None, as_json: bool) -> None:
    """Fetch every configured feed into the database (or inspect one feed)."""
    from .pipeline import fetch_all, utcnow
    from .store import Store

    if feed_url:
        papers = _fetch_one(cfg, feed_url)
        if as_json:
            from .sources import paper_json

            click.echo(json.dumps([paper_json(p) for p in papers], indent=2, ensure_ascii=False))
        else:
            for p in papers:
                up = f" [{p.upvotes} upvotes]" if p.upvotes is not None else ""
                click.echo(f"{p.id}  {p.title}{up}")
            click.echo(f"{len(papers)} papers", err=True)
        return
    store = Store(cfg.database_url)
    try:
        summary = fetch_all(cfg, store, utcnow)
    finally:
        store.close()
    for name, n in summary.ok:
        click.echo(f"{name}: {n} papers")
    for name in summary.not_modified:
        click.echo(f"{name}: unchanged since last fetch")
    for name, reason in summary.errors:
        click.echo(f"{name}: FAILED: {reason}")
    click.echo(f"{summary.new} new papers, {summary.updated} updated")
    sys.exit(EXIT_PARTIAL if summary.errors else EXIT_OK)


def _fetch_one(cfg: Config, url: str) -> list[Any]:
    from .config import Feed
    from .sources import Fetcher

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


@main.command()
@common
def check(cfg: Config) -> None:
    """Validate config.toml and every subscriber file."""
    from .profiles import load_profiles

    click.echo(
        f"{cfg.path}: OK ({len(cfg.feeds)} feeds, "
        f"{'SMTP ' + cfg.smtp.host if cfg.smtp.host else 'outbox ' + str(cfg.outbox_path)})"
    )
    check_config(cfg)
    profiles, errors = load_profiles(cfg.subscribers_path)
    click.echo(f"{cfg.subscribers_path}: {len(profiles)} subscribers OK, {len(errors)} broken")
    for err in errors:
        click.echo(f"  {err}", err=True)
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


def _edition_planner(cfg: Config, feeds: tuple[str, ...], edition: date | None) -> Any:
    from .pipeline import Planner, edition_for, edition_papers, utcnow
    from .store import Store

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
        papers = edition_papers(store, ed, now, create=False)
        if not papers:
            raise DigestError(
                f"no stored papers for edition {ed}; run 'digest fetch' first or pass --feed"
            )
    return Planner(cfg, store, ed, papers, now)


def _profile(cfg: Config, name: str) -> Profile:
    from .profiles import find_profile

    return find_profile(cfg.subscribers_path, name)


@main.command()
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
    planner = _edition_planner(cfg, feeds, edition)
    picks = planner.pick(profile, top=top)
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
    click.echo(f"{profile.email}: {len(picks)} of {len(planner.by_id)} papers")
    for i, s in enumerate(picks, 1):
        click.echo(f"{i:2}. {s.score:6.3f}  {s.paper.title}")
        click.echo(f"            {s.paper.url}")
        if s.reasons:
            click.echo(f"            why: {'; '.join(s.reasons)}")


@main.command()
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
) -> None:
    """Write a subscriber's digest as .html, .txt and .eml without sending it."""
    from .profiles import load_profiles
    from .send import build_message, unsubscribe_url

    if bool(subscriber) == all_:
        raise click.UsageError("give one SUBSCRIBER or --all")
    if all_:
        profiles, errors = load_profiles(cfg.subscribers_path)
        for err in errors:
            click.echo(f"digest: warning: {err}", err=True)
    else:
        assert subscriber is not None
        profiles, errors = [_profile(cfg, subscriber)], []
    planner = _edition_planner(cfg, feeds, edition)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Profile, Path, int]] = []
    for profile in profiles:
        picks = planner.pick(profile)
        unsub = unsubscribe_url(cfg, profile.email)
        if picks:
            rendered = planner.renderer.render(
                planner.digest(profile, picks), unsubscribe_url=unsub
            )
        else:
            rendered = planner.renderer.render_empty(
                profile, planner.edition, unsubscribe_url=unsub
            )
        base = out_dir / profile.slug
        base.with_suffix(".html").write_text(rendered.html, encoding="utf-8")
        base.with_suffix(".txt").write_text(rendered.text, encoding="utf-8")
        base.with_suffix(".eml").write_bytes(
            build_message(cfg, profile, planner.edition, rendered, now=planner.now)
        )
        for suffix in (".html", ".txt", ".eml"):
            click.echo(str(base.with_suffix(suffix)))
        for note in rendered.notes:
            click.echo(f"  note: {note}", err=True)
        written.append((profile, base, len(picks)))
    target = written[0][1].with_suffix(".html") if written else None
    if all_:
        target = _write_index(out_dir, planner.edition, written)
        click.echo(str(target))
    if open_ and target is not None:
        webbrowser.open(target.resolve().as_uri())
    sys.exit(EXIT_PARTIAL if errors else EXIT_OK)


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


@main.command()
@common
def feeds(cfg: Config) -> None:
    """Show each feed's health: last success, last error, consecutive failures."""
    from .store import Store

    store = Store(cfg.database_url)
    try:
        states = {s.name: s for s in store.feed_states()}
    finally:
        store.close()
    broken = 0
    for feed in cfg.feeds:
        st = states.get(feed.name)
        if st is None or st.last_attempt is None:
            click.echo(f"{feed.name}: never fetched ({feed.url})")
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
        click.echo(line)
    sys.exit(EXIT_PARTIAL if broken else EXIT_OK)


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    return when.strftime("%Y-%m-%d %H:%M UTC")


from . import ops_cli  # noqa: E402,F401  (schedule, subscribe, unsubscribe, subscribers, status)
