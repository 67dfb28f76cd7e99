"""Templates: found (a ``templates_dir`` first, then the built-in ones), parsed, rendered,
and the per-email path (Jinja -> MJML (mjml-python) -> premailer; Jinja for the text).

The per-email path is the reference: the compiled fast path (``_fast``) must give the same
bytes, and any template it cannot reproduce is rendered this way.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import jinja2

from ..config import Config
from ..errors import RenderError
from ..models import Paper
from ._cards import Card, make_card
from ._textfmt import Wrapper, one_line, safe_url


def builtin_templates() -> Path:
    """The built-in templates: the package data of an installed digest (a wheel installs
    the repository's top-level templates/ as digest/templates, found wherever it is: a
    venv, --user, --target), else the repository's templates/ folder (a checkout, or an
    editable install of one)."""
    packaged = importlib.resources.files("digest") / "templates"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if checkout.is_dir():
        return checkout
    raise RenderError(f"built-in templates not found in {packaged} or {checkout}; reinstall digest")


DIGEST_HTML = "digest.mjml.j2"
DIGEST_TEXT = "digest.txt.j2"
EMPTY_HTML = "empty.mjml.j2"
EMPTY_TEXT = "empty.txt.j2"
CARD_HTML = "_card.mjml.j2"
CARD_TEXT = "_card.txt.j2"
SUBJECT = "subject.txt.j2"

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
    "view_url",
)


class Output(NamedTuple):
    """A rendered digest; the parts, when the fast path made them, join to html / text
    (the message builder encodes each shared part once); ``size``, when known (not -1),
    is the HTML's size in UTF-8."""

    html: str
    text: str
    html_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()
    size: int = -1


class Templates:
    """The templates of one configuration, parsed, with what every digest shares: the
    sender's values, the abstract lengths tried, the text wrapper."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dirs = template_dirs(cfg)
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
        self.levels = abstract_levels(cfg.render.abstract_chars)
        self.check()
        used = self._variables(SUBJECT)
        # the per-digest values it reads besides top_title and count (None: unknown)
        self._subject_keys = (
            None if used is None else tuple(k for k in used if k not in ("top_title", "count"))
        )
        self._subjects: dict[tuple[Any, ...], str] = {}

    def check(self) -> None:
        """Parse every template now, so a syntax error stops the run before anything is sent."""
        names = {n for n in self.loader.list_templates() if n.endswith(".j2")}
        names |= {DIGEST_HTML, DIGEST_TEXT, EMPTY_HTML, EMPTY_TEXT, SUBJECT}
        for name in sorted(names):
            env = self.html_env if ".mjml" in name or ".html" in name else self.text_env
            try:
                env.get_template(name)
            except jinja2.TemplateError as exc:
                raise template_error(exc, name) from exc

    def subject(self, fields: dict[str, str], top_title: str, count: int) -> str:
        """The subject line from ``subject.txt.j2``: one line, whitespace collapsed.

        The template sees what the digest sees, plus ``top_title`` (the first pick's
        title, shortened) and ``count`` (the number of papers, 0 for the empty note).
        Subjects are remembered by the values the template uses, so a subject that
        names only the top paper is rendered once per edition, not once per email."""
        key = None
        if self._subject_keys is not None:  # the values it reads, without a context built
            constants = self.constants
            get = fields.get
            key = (top_title, count, *[get(k, constants.get(k)) for k in self._subject_keys])
            found = self._subjects.get(key)
            if found is not None:
                return found
        context = {**self.constants, **fields, "top_title": top_title, "count": count}
        subject = one_line(render_template(self.text_env, SUBJECT, context))
        if not subject:
            raise RenderError(f"template {SUBJECT}: gives an empty subject; make it say something")
        if key is not None:
            if len(self._subjects) >= 16_384:  # a top paper and a count: 10,000s a run
                self._subjects.clear()
            self._subjects[key] = subject
        return subject

    def _variables(self, name: str) -> tuple[str, ...] | None:
        """The variables template ``name`` reads, sorted; None when it includes, imports
        or extends another template (what that reads is not known here)."""
        from jinja2 import meta, nodes

        source = self.loader.get_source(self.text_env, name)[0]
        tree = self.text_env.parse(source)
        if any(tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends))):
            return None
        return tuple(sorted(meta.find_undeclared_variables(tree)))

    def card(self, paper: Paper, level: int) -> Card:
        return make_card(paper, level)

    def naive(
        self, fields: dict[str, str], cards: Sequence[Card], html_name: str, text_name: str
    ) -> tuple[str, str]:
        """The per-email path: Jinja -> MJML -> premailer, and Jinja for the text."""
        context = {**self.constants, **fields, "cards": cards}
        html = compile_mjml(render_template(self.html_env, html_name, context), html_name)
        text = self.wrapper(render_template(self.text_env, text_name, context))
        return html, text


def template_dirs(cfg: Config) -> list[Path]:
    dirs = []
    user = cfg.templates_path
    if user is not None:
        if not user.is_dir():
            raise RenderError(
                f"templates_dir {user}: not a folder; create it or remove templates_dir from "
                f"{cfg.path}"
            )
        dirs.append(user)
    dirs.append(builtin_templates())
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


def abstract_levels(first: int) -> tuple[int, ...]:
    levels = [first] + [n for n in (300, 150) if n < first] + [0]
    return tuple(levels)
