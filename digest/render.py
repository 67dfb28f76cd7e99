"""Rendering: Jinja -> MJML (mjml-python) -> premailer for the HTML part, Jinja for the text part.

Templates live in the repository's ``templates/`` folder; a ``templates_dir`` in the config
overrides any of them by name. The parts every subscriber shares (the paper cards, the MJML
compile, premailer) are done once per edition by :mod:`digest.render_fast`; this module holds
the templates' context, the per-email ("naive") path and the size guard.
"""

from __future__ import annotations

import logging
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import jinja2

from .config import Config
from .errors import RenderError
from .models import Digest, Paper, Profile, Rendered, Scored
from .textfmt import Wrapper, clean_text, one_line, plural, safe_url, short_authors, shorten

log = logging.getLogger(__name__)

# The repository's templates/ folder (a checkout or an editable install), else the copy a
# wheel installs under <prefix>/share/digest/templates.
BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_INSTALLED_TEMPLATES = (
    Path(sysconfig.get_path("data")) / "share" / "digest" / "templates",
    Path(sys.prefix) / "share" / "digest" / "templates",
)

DIGEST_HTML = "digest.mjml.j2"
DIGEST_TEXT = "digest.txt.j2"
EMPTY_HTML = "empty.mjml.j2"
EMPTY_TEXT = "empty.txt.j2"
CARD_HTML = "_card.mjml.j2"
CARD_TEXT = "_card.txt.j2"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# The per-subscriber values every template may use (all plain strings).
FIELDS = (
    "name",
    "greeting",
    "email",
    "date_label",
    "count_label",
    "title",
    "preheader",
    "interests",
    "unsubscribe_url",
    "manage_url",
)


@dataclass(frozen=True, slots=True)
class Card:
    """What a card template sees as ``card``; all text already cleaned, links http(s) only."""

    id: str
    title: str
    url: str
    authors: str
    summary: str
    stats: str
    links: tuple[tuple[str, str], ...]
    categories: str
    reasons: str = ""


def date_label(day: date) -> str:
    """``Fri 27 Nov 2026`` (English whatever the locale)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def make_card(paper: Paper, abstract_chars: int) -> Card:
    """A paper's card with its summary cut to ``abstract_chars`` (0 leaves it out)."""
    summary = clean_text(paper.ai_summary) or clean_text(paper.abstract)
    stats = []
    if paper.upvotes:
        stats.append(plural(paper.upvotes, "upvote"))
    if paper.comments:
        stats.append(plural(paper.comments, "comment"))
    if paper.github_stars:
        stats.append(plural(paper.github_stars, "GitHub star"))
    url = safe_url(paper.url) or safe_url(paper.hf_url) or safe_url(paper.pdf_url)
    links: list[tuple[str, str]] = []
    for label, link in (
        ("PDF", paper.pdf_url),
        ("Code", paper.code_url),
        ("Hugging Face", paper.hf_url),
        ("Project", paper.project_url),
    ):
        good = safe_url(link)
        if good and good != url and all(good != u for _, u in links):
            links.append((label, good))
    return Card(
        id=paper.id,
        title=clean_text(paper.title) or "(untitled)",
        url=url,
        authors=short_authors(paper.authors),
        summary=shorten(summary, abstract_chars),
        stats=" · ".join(stats),
        links=tuple(links),
        categories=", ".join(one_line(c) for c in paper.categories[:3]),
    )


def reasons_line(pick: Scored) -> str:
    return one_line(" · ".join([r for r in map(one_line, pick.reasons) if r]))


def subject_line(label: str, count: int) -> str:
    return one_line(f"Your paper digest for {label}: {plural(count, 'paper')}")


# ---------------------------------------------------------------- templates


def _template_dirs(cfg: Config) -> list[Path]:
    dirs = []
    user = cfg.templates_path
    if user is not None:
        if not user.is_dir():
            raise RenderError(
                f"templates_dir {user}: not a folder; create it or remove templates_dir from "
                f"{cfg.path}"
            )
        dirs.append(user)
    for builtin in (BUILTIN_TEMPLATES, *_INSTALLED_TEMPLATES):
        if builtin.is_dir():
            dirs.append(builtin)
            break
    else:
        raise RenderError(f"built-in templates not found in {BUILTIN_TEMPLATES}; reinstall digest")
    return dirs


def make_environment(loader: jinja2.BaseLoader, *, html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def template_error(exc: BaseException, name: str) -> RenderError:
    """One line naming the template file and line for any Jinja failure."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name or name}:{exc.lineno}"
        detail = one_line(exc.message or "syntax error").rstrip(".")
        return RenderError(f"template {where}: {detail}; fix the template syntax")
    if isinstance(exc, jinja2.TemplateNotFound):
        return RenderError(
            f"template {name}: includes {exc.name!r}, which is in no templates folder; "
            "check the name or add the file"
        )
    where = name
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or "template" in Path(filename).name:
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    detail = one_line(str(exc)) or type(exc).__name__
    return RenderError(f"template {where}: {detail}; fix the template or its variable names")


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except RenderError:
        raise
    except Exception as exc:  # any failure inside a template is the template's error
        if isinstance(
            exc,
            (
                jinja2.TemplateError,
                TypeError,
                ValueError,
                AttributeError,
                KeyError,
                IndexError,
                ZeroDivisionError,
            ),
        ):
            raise template_error(exc, name) from exc
        raise


def compile_mjml(source: str, name: str) -> str:
    """MJML -> HTML -> CSS inlined (premailer, no network, @media and Outlook comments kept)."""
    return inline_css(mjml_to_html(source, name))


def mjml_to_html(source: str, name: str) -> str:
    """MJML -> HTML (mjml-python, no web fonts), before premailer."""
    from mjml import mjml2html

    try:
        html: str = mjml2html(source, fonts={})
    except ValueError as exc:
        raise RenderError(
            f"template {name}: produced malformed MJML ({one_line(str(exc))}); "
            "check its tags are closed and nested as MJML expects"
        ) from exc
    return html


def inline_css(html: str) -> str:
    import cssutils
    from premailer import Premailer

    cssutils.log.setLevel(logging.CRITICAL)
    out = Premailer(
        html,
        allow_network=False,
        strip_important=False,
        keep_style_tags=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    if not out.lstrip()[:9].lower().startswith("<!doctype"):
        out = "<!doctype html>\n" + out
    return out


# ---------------------------------------------------------------- the renderer


class Output(NamedTuple):
    """A rendered digest; the parts, when the fast path made them, join to html / text
    (and may carry their quoted-printable, see ``digest.mime.EncodedParts``); ``size``,
    when known (not -1), is the HTML's size in UTF-8."""

    html: str
    text: str
    html_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()
    size: int = -1


class Renderer:
    """Turns a :class:`Digest` into a :class:`Rendered` email (subject, HTML, text)."""

    def __init__(self, cfg: Config, *, fast: bool = True) -> None:
        self.cfg = cfg
        self.dirs = _template_dirs(cfg)
        loader = jinja2.FileSystemLoader([str(d) for d in self.dirs])
        self.loader: jinja2.BaseLoader = loader
        self.html_env = make_environment(loader, html=True)
        self.text_env = make_environment(loader, html=False)
        self.wrapper = Wrapper()
        sender = cfg.sender
        self.constants: dict[str, Any] = {
            "sender_name": one_line(sender.name),
            "sender_address": one_line(sender.address),
            "reply_address": one_line(sender.reply_to or sender.address),
            "organization": one_line(sender.organization),
            "postal_address": one_line(sender.postal_address),
            "base_url": safe_url(cfg.render.base_url),
        }
        self.levels = _abstract_levels(cfg.render.abstract_chars)
        self.sizes: dict[str, int] = {}  # UTF-8 sizes of the parts of the fast path
        self._label_memo: dict[tuple[date, int], tuple[str, str, str]] = {}
        self.fast: Any = None
        if fast:
            from .render_fast import FastPath

            self.fast = FastPath(self)
        self._check_templates()

    def _check_templates(self) -> None:
        """Parse every template now, so a syntax error stops the run before anything is sent."""
        names = {n for n in self.loader.list_templates() if n.endswith(".j2")}
        names |= {DIGEST_HTML, DIGEST_TEXT, EMPTY_HTML, EMPTY_TEXT}
        for name in sorted(names):
            env = self.html_env if ".mjml" in name or ".html" in name else self.text_env
            try:
                env.get_template(name)
            except jinja2.TemplateError as exc:
                raise template_error(exc, name) from exc

    # -------------------------------------------------------- public API

    def begin_edition(self, papers: Iterable[Paper]) -> None:
        """Render every paper's card once for this edition (the fast path's shared work)."""
        if self.fast is not None:
            self.fast.begin_edition(list(papers))

    def render(
        self, digest: Digest, *, unsubscribe_url: str = "", manage_url: str = ""
    ) -> Rendered:
        picks = digest.picks
        fields = self.fields(digest.profile, digest.edition, picks, unsubscribe_url, manage_url)
        notes: list[str] = []
        limit = self.cfg.render.max_html_bytes
        out = Output("", "")
        size = 0
        for level in self.levels:
            out = self._render_digest(fields, picks, level)
            size = self._size(out, limit)
            if size <= limit:
                break
        if level != self.levels[0]:
            notes.append(
                f"shortened abstracts to {level} characters to keep the HTML under {limit} bytes"
                if level
                else f"left out abstracts to keep the HTML under {limit} bytes"
            )
        dropped = 0
        while size > limit and len(picks) > 1:
            picks = picks[:-1]
            dropped += 1
            fields = self.fields(digest.profile, digest.edition, picks, unsubscribe_url, manage_url)
            out = self._render_digest(fields, picks, level)
            size = self._size(out, limit)
        if dropped:
            notes.append(f"dropped {plural(dropped, 'paper')} to keep the HTML under {limit} bytes")
        for note in notes:
            log.warning("digest for %s on %s: %s", digest.profile.email, digest.edition, note)
        subject = subject_line(fields["date_label"], len(picks))
        return Rendered(
            subject=subject,
            html=out.html,
            text=out.text,
            notes=tuple(notes),
            html_parts=out.html_parts,
            text_parts=out.text_parts,
        )

    def _size(self, out: Output, limit: int) -> int:
        """The HTML's size in UTF-8, or when that is surely within ``limit``, a bound on
        it: the known sizes of its long parts (the layout and the cards, shared by every
        digest) plus four bytes a character for the others. Encoding 30 KB of HTML for
        every digest costs more than the whole check."""
        if out.size >= 0:
            return out.size
        if out.html_parts and not out.html.isascii():
            sizes = self.sizes
            bound = 0
            for part in out.html_parts:
                if len(part) < 200:
                    bound += 4 * len(part)
                    continue
                n = sizes.get(part)
                if n is None:
                    if len(sizes) >= 20_000:
                        sizes.clear()
                    n = sizes[part] = len(part.encode("utf-8"))
                bound += n
            if bound <= limit:
                return bound
        return len(out.html.encode("utf-8"))

    def render_empty(
        self, profile: Profile, edition: date, *, unsubscribe_url: str = "", manage_url: str = ""
    ) -> Rendered:
        fields = self.fields(profile, edition, (), unsubscribe_url, manage_url)
        fields["title"] = f"Nothing new for you on {fields['date_label']}"
        fields["preheader"] = "No new paper matched your interests today."
        if self.fast is not None:
            html, text = self.fast.render_empty(fields)
        else:
            html, text = self.naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        subject = one_line(f"Your paper digest for {fields['date_label']}: no new papers today")
        return Rendered(subject=subject, html=html, text=text)

    # -------------------------------------------------------- pieces

    def fields(
        self,
        profile: Profile,
        edition: date,
        picks: Sequence[Scored],
        unsubscribe_url: str,
        manage_url: str,
    ) -> dict[str, str]:
        """The per-subscriber strings the templates see."""
        name = one_line(profile.name)
        label, count, title = self._labels(edition, len(picks))
        titles = " · ".join([clean_text(p.paper.title) for p in picks[:3]])
        return {
            "name": name,
            "greeting": f"Hi {name}," if name else "Hello,",
            "email": one_line(profile.email),
            "date_label": label,
            "count_label": count,
            "title": title,
            "preheader": shorten(f"{count} today: {titles}", 140) if titles else count,
            "interests": shorten(clean_text(profile.interests), 160),
            "unsubscribe_url": safe_url(unsubscribe_url, allow_mailto=True),
            "manage_url": safe_url(manage_url, allow_mailto=True),
        }

    def _labels(self, edition: date, count: int) -> tuple[str, str, str]:
        """(date label, count label, title) for an edition and a number of papers."""
        key = (edition, count)
        found = self._label_memo.get(key)
        if found is None:
            if len(self._label_memo) >= 1000:
                self._label_memo.clear()
            label = date_label(edition)
            found = (label, plural(count, "paper"), f"Your paper digest for {label}")
            self._label_memo[key] = found
        return found

    def card(self, paper: Paper, level: int) -> Card:
        return make_card(paper, level)

    def _render_digest(self, fields: dict[str, str], picks: Sequence[Scored], level: int) -> Output:
        if self.fast is not None:
            return self.fast.render_digest(fields, picks, level)
        cards = [replace(self.card(p.paper, level), reasons=reasons_line(p)) for p in picks]
        return Output(*self.naive(fields, cards, DIGEST_HTML, DIGEST_TEXT))

    def naive(
        self, fields: dict[str, str], cards: Sequence[Card], html_name: str, text_name: str
    ) -> tuple[str, str]:
        """The per-email path: Jinja -> MJML -> premailer, and Jinja for the text."""
        context = {**self.constants, **fields, "cards": cards}
        html = compile_mjml(render_template(self.html_env, html_name, context), html_name)
        text = self.wrapper(render_template(self.text_env, text_name, context))
        return html, text


def _abstract_levels(first: int) -> tuple[int, ...]:
    levels = [first] + [n for n in (300, 150) if n < first] + [0]
    return tuple(levels)
