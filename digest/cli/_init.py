"""``digest init``: a folder to run digest from, for an installed digest (a wheel, pip
install --user) as well as a checkout: a commented config.toml, the subscribers folder with
one example subscriber, the outbox; then what to edit next."""

from __future__ import annotations

import importlib.resources
import re
import sys
from pathlib import Path

import click

from ._common import EXIT_USAGE

SKELETON = "skeleton"  # package data: digest/skeleton/*.toml


def _skeleton(name: str) -> str:
    return (importlib.resources.files("digest") / SKELETON / name).read_text(encoding="utf-8")


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


@click.command()
@click.argument("folder", type=click.Path(path_type=Path), default=Path("."))
@click.option("--email", default="", help="Your address, for the first subscriber (you).")
@click.option("--name", default="", help="Your name, for the greeting.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when all went well.")
def init(folder: Path, email: str, name: str, quiet: bool) -> None:
    """Make FOLDER (default: here) ready to run digest: config.toml, subscribers/ with an
    example subscriber, outbox/. Nothing that exists is overwritten."""
    from ..subscribers import check_email

    quiet = quiet or bool(click.get_current_context().find_root().params.get("quiet"))

    config = folder / "config.toml"
    if config.exists():
        click.echo(
            f"digest: error: {config} exists; digest init changes nothing there (edit it, "
            "or give another folder)",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    if email:
        try:
            email = check_email(email.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--email") from exc
    subscribers = folder / "subscribers"
    outbox = folder / "outbox"
    for d in (folder, subscribers, outbox):
        d.mkdir(parents=True, exist_ok=True)
    config.write_text(_skeleton("config.toml"), encoding="utf-8")
    slug = re.sub(r"[^a-z0-9]+", "-", email.split("@")[0].lower()).strip("-") or "you"
    person = subscribers / f"{slug}.toml"
    made_person = not person.exists()
    if made_person:
        text = _skeleton("subscriber.toml")
        if email:
            text = text.replace('email = "you@example.org"', f"email = {_toml_string(email)}")
        if name:
            text = text.replace('name = ""', f"name = {_toml_string(name)}")
        person.write_text(text, encoding="utf-8")
    if quiet:
        return
    here = _shown(folder)
    click.echo(f"created {_shown(config)}: every setting, commented")
    if made_person:
        click.echo(f"created {_shown(person)}: your first subscriber, an example to make yours")
    click.echo(f"created {_shown(outbox)}/: digests go there as .eml until [smtp] host is set")
    steps = [
        f"{_shown(person)}: "
        + (
            "what you work on (interests, keywords)"
            if email
            else "your address and what you work on"
        ),
        f"{_shown(config)}: [sender] address and name, the [[feeds]] you want; [smtp] to send mail",
        ("" if here == "." else f"cd {here}, then: ")
        + "digest check   (and digest check --smtp once [smtp] is set)",
        'digest run   (then every day, from cron or systemd: the README\'s "Running it every day")',
    ]
    click.echo("next:")
    for n, step in enumerate(steps, 1):
        click.echo(f"  {n}. {step}")
    click.echo(
        "secrets come from the environment, never the file: DIGEST_SMTP_PASSWORD for "
        "[smtp] user, DIGEST_UNSUBSCRIBE_SECRET to sign unsubscribe links"
    )
