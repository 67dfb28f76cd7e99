"""The renderer: a ``Digest`` in, a ``Rendered`` email out (subject, HTML, text), within the
HTML size that mail clients show without clipping.

The parts every subscriber shares (the paper cards, the MJML compile, premailer) are done
once per edition by the compiled fast path (``_fast``); the per-email path (``_templates``)
is the reference it is checked against and the fallback for templates it cannot reproduce.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date

from ..config import Config
from ..models import Digest, Paper, Profile, Rendered, Scored
from ._cards import card_of, date_label
from ._fast import FastPath
from ._templates import DIGEST_HTML, DIGEST_TEXT, EMPTY_HTML, EMPTY_TEXT, Output, Templates
from ._textfmt import clean_text, one_line, plural, safe_url, shorten

log = logging.getLogger(__name__)

SUBJECT_TITLE = 60  # characters of the top pick's title in the subject (``top_title``)


class Renderer:
    """Turns a :class:`Digest` into a :class:`Rendered` email (subject, HTML, text)."""

    def __init__(self, cfg: Config, *, fast: bool = True) -> None:
        self.cfg = cfg
        self.templates = Templates(cfg)
        self.levels = self.templates.levels
        self.sizes: dict[str, int] = {}  # UTF-8 sizes of the parts of the fast path
        self._label_memo: dict[tuple[date, int], tuple[str, str, str]] = {}
        # With the web app, every card of every digest carries its vote links.
        votes = bool(cfg.web.base_url)
        self.fast: FastPath | None = FastPath(self.templates, votes=votes) if fast else None

    # -------------------------------------------------------- public API

    def begin_edition(self, papers: Iterable[Paper]) -> None:
        """Render every paper's card once for this edition (the fast path's shared work)."""
        if self.fast is not None:
            self.fast.begin_edition(list(papers))

    def render(
        self,
        digest: Digest,
        *,
        unsubscribe_url: str = "",
        manage_url: str = "",
        view_url: str = "",
        vote_url: str = "",
    ) -> Rendered:
        """The digest's email. ``vote_url`` is the reader's signed link for votes on this
        digest's papers: each card gets its "more / less like this" links from it."""
        picks = digest.picks
        vote_url = safe_url(vote_url)
        fields = self.fields(
            digest.profile, digest.edition, picks, unsubscribe_url, manage_url, view_url
        )
        notes: list[str] = []
        limit = self.cfg.render.max_html_bytes
        out = Output("", "")
        size = 0
        for level in self.levels:
            out = self._render_digest(fields, picks, level, vote_url)
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
            fields = self.fields(
                digest.profile, digest.edition, picks, unsubscribe_url, manage_url, view_url
            )
            out = self._render_digest(fields, picks, level, vote_url)
            size = self._size(out, limit)
        if dropped:
            notes.append(f"dropped {plural(dropped, 'paper')} to keep the HTML under {limit} bytes")
        for note in notes:
            log.warning("digest for %s on %s: %s", digest.profile.email, digest.edition, note)
        top = clean_text(picks[0].paper.title) if picks else ""
        subject = self.templates.subject(fields, shorten(top, SUBJECT_TITLE), len(picks))
        return Rendered(
            subject=subject,
            html=out.html,
            text=out.text,
            notes=tuple(notes),
            papers=len(picks),
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
            html, text = self.templates.naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        subject = self.templates.subject(fields, "", 0)
        return Rendered(subject=subject, html=html, text=text)

    def render_note(
        self,
        html_template: str,
        text_template: str,
        profile: Profile,
        subject: str,
        extra: dict[str, str],
    ) -> Rendered:
        """A short message of its own templates (both parts), rendered the per-email way:
        the confirmation mail of a web sign-up, say. ``extra`` adds template values (URLs
        in it are kept only when http(s))."""
        fields = self.fields(profile, date.today(), (), "", "")
        fields["title"] = subject
        fields["preheader"] = subject
        fields.update({k: safe_url(v) if k.endswith("_url") else v for k, v in extra.items()})
        html, text = self.templates.naive(fields, (), html_template, text_template)
        return Rendered(subject=one_line(subject), html=html, text=text)

    # -------------------------------------------------------- pieces

    def fields(
        self,
        profile: Profile,
        edition: date,
        picks: Sequence[Scored],
        unsubscribe_url: str,
        manage_url: str,
        view_url: str = "",
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
            # each subscriber's own: cleaned without a place in clean_text's cache
            "interests": shorten(clean_text.__wrapped__(profile.interests), 160),
            "unsubscribe_url": safe_url(unsubscribe_url, allow_mailto=True),
            "manage_url": safe_url(manage_url, allow_mailto=True),
            "view_url": safe_url(view_url),
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

    def _render_digest(
        self, fields: dict[str, str], picks: Sequence[Scored], level: int, vote_url: str
    ) -> Output:
        if self.fast is not None:
            return self.fast.render_digest(fields, picks, level, vote_url)
        cards = [card_of(p, level, vote_url) for p in picks]
        return Output(*self.templates.naive(fields, cards, DIGEST_HTML, DIGEST_TEXT))
