"""The fast path: MJML and premailer once per edition, string assembly per subscriber.

How it works. Templates are rendered with unique marker strings in place of every
per-subscriber value and of every card, then compiled (Jinja -> MJML -> premailer) once:

* a *skeleton* per template, per number of cards and per "shape" (which per-subscriber
  values are empty, since templates may test them with ``{% if %}``): the compiled HTML is
  cut at the markers into literal pieces and holes. When a skeleton's MJML and its
  compiled HTML repeat one piece between card slots, skeletons for other numbers of cards
  (two or more) are put together from those pieces, without premailer, once their MJML
  and MJML's HTML show the same repetition;
* every paper's *card*, compiled once per edition, in two forms: with a marker as its
  reasons line, and without reasons. Cards alike in which fields are empty and which links
  they have go through premailer as one marked card, the others filled in (when their MJML
  is that card's with their text in, and the first of them compiled in full agrees).

A personalized digest is then the skeleton's pieces joined with the chosen cards and the
subscriber's values, escaped the way the HTML serializer would have written them, and
laid out as it would have laid them out: a card's slot in a skeleton is an element like
the card, so the line ends around cards are the serializer's own. The result is the very
bytes the per-email path gives (``Templates.naive``): the first digest of each skeleton
(or family of skeletons) is also rendered the per-email way and compared byte for byte;
if a custom template does something the fast path cannot reproduce, rendering falls back
to the per-email path and the log says so. The digest comes with the parts it was joined
from, so that the message builder encodes each shared piece once per run.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, cast

import jinja2
import markupsafe

from ..models import Paper, Scored
from ._cards import Card, card_of, reasons_line, vote_links
from ._pieces import (
    CardForm,
    Escape,
    Memo,
    Pattern,
    TextPattern,
    _quick_agrees,
    _Unsupported,
    escape_attr,
    escape_text,
    quick_line,
    same_text,
)
from ._templates import (
    CARD_HTML,
    CARD_TEXT,
    DIGEST_HTML,
    DIGEST_TEXT,
    EMPTY_HTML,
    EMPTY_TEXT,
    FIELDS,
    Output,
    Templates,
    compile_mjml,
    inline_css,
    make_environment,
    mjml_to_html,
    render_template,
)
from ._textfmt import Wrapper, squeeze

log = logging.getLogger(__name__)

BATCH = 5000  # cards per compiled document
_BLANKS = re.compile("\n\n\n")  # quicker than ``in`` over a text of many short lines


class _Repeat(NamedTuple):
    """A text cut at its card slots: ``first`` slot ``between`` slot ... slot ``last``."""

    first: str
    between: str
    last: str
    slot: str

    @classmethod
    def of(cls, pieces: list[str], slot: str) -> _Repeat:
        return cls(pieces[0], pieces[1], pieces[-1], slot)

    def join(self, count: int) -> str:
        s = self.slot
        return self.first + s + (self.between + s) * (count - 1) + self.last


class _Family:
    """A skeleton's pieces at three stages (MJML, MJML compiled, premailer's output), from
    the skeleton compiled for ``key``."""

    __slots__ = ("key", "mid", "out", "src")

    def __init__(
        self,
        key: tuple[str, tuple[bool, ...], int],
        src: list[str],
        mid: list[str],
        out: list[str],
        marker: str,
        slot: str,
    ) -> None:
        self.key = key
        self.src = _Repeat.of(src, marker)
        self.mid = _Repeat.of(mid, marker)
        self.out = _Repeat.of(out, slot)


class FastPath:
    def __init__(self, templates: Templates, *, votes: bool = False) -> None:
        self.r = templates
        # Whether digests carry vote links ("more / less like this" on every card): the
        # cards are compiled with them or without, for the whole run. A digest of the
        # other kind is rendered the per-email way.
        self.votes = votes
        tok = secrets.token_hex(5)
        self.tok = tok
        self.field_marker = {name: f"q{tok}f{i}q" for i, name in enumerate(FIELDS)}
        self.reasons_marker = f"q{tok}rq"
        # a card's own per-digest values: its reasons and vote links
        self.card_hole = {
            self.reasons_marker: "reasons",
            f"q{tok}mq": "more_url",
            f"q{tok}lq": "less_url",
        }
        slot, begin, end = f"q{tok}sq", f"q{tok}bq", f"q{tok}eq"
        self.slot, self.begin, self.end = slot, begin, end
        base = templates.loader
        real = jinja2.PrefixLoader({f"q{tok}real": base})

        def env(html: bool, overrides: dict[str, str]) -> jinja2.Environment:
            return make_environment(
                jinja2.ChoiceLoader([jinja2.DictLoader(overrides), real, base]), html=html
            )

        # A card's slot in a skeleton is an empty element of the tag the cards compile to
        # (``card_tag``), so the HTML serializer lays out the line ends around it as it does
        # around a card; a comment until a card was compiled.
        self.slot_var = f"q{tok}slot"
        self.card_tag = ""
        self.html_skeleton_env = env(
            True, {CARD_HTML: f"<mj-raw>{{{{ {self.slot_var}|safe }}}}</mj-raw>\n"}
        )
        self.text_skeleton_env = env(False, {CARD_TEXT: slot})
        self.html_cards_env = env(
            True,
            {
                CARD_HTML: f"<mj-raw><!--{begin}--></mj-raw>\n"
                f'{{% include "q{tok}real/{CARD_HTML}" %}}\n'
                f"<mj-raw><!--{end}--></mj-raw>\n"
            },
        )
        self.text_cards_env = env(
            False, {CARD_TEXT: f'{begin}{{% include "q{tok}real/{CARD_TEXT}" %}}{end}'}
        )
        names = "|".join(re.escape(m) for m in (slot, *self.card_hole))
        fields = "|".join(re.escape(m) for m in self.field_marker.values())
        slot_tag = rf"<([A-Za-z][\w-]*)\s[^<>]*\b{re.escape(slot)}\b[^<>]*>(?:</\1>)?"
        slot_any = rf"<!--\s*{re.escape(slot)}\s*-->|{slot_tag}"
        self.marker_re = re.compile(rf"{slot_any}|{names}|{fields}")
        self.field_of = {m: name for name, m in self.field_marker.items()}
        self.card_tok = f"q{tok}c"
        self.card_markers = [f"q{tok}c{j}q" for j in range(16)]
        self.card_marker_re = re.compile("|".join(re.escape(m) for m in self.card_markers))
        self.skeletons: dict[tuple[str, tuple[bool, ...], int], tuple[Pattern, TextPattern]] = {}
        self.verified: set[tuple[str, tuple[bool, ...], int]] = set()
        # Skeletons per (template, shape) whose compiled HTML repeats one piece between
        # card slots: those for other card counts are put together from the pieces, no
        # premailer; ``proof`` maps such a skeleton's key to the key checked for it.
        self.slot_re = re.compile(slot_any)
        self.families: dict[tuple[str, tuple[bool, ...]], _Family] = {}
        self.proof: dict[tuple[str, tuple[bool, ...], int], tuple[str, tuple[bool, ...], int]] = {}
        self.quick = _quick_agrees(templates.wrapper)
        # Each paper's card with a marker for its reasons (every digest needs it), and
        # without reasons, compiled only once some digest has a paper without any.
        self.cards: dict[tuple[Paper, int], tuple[Pattern, TextPattern]] = {}
        # (finished HTML and text; with vote links, their patterns)
        self.plain: dict[tuple[Paper, int], tuple[str, str] | tuple[Pattern, TextPattern]] = {}
        # level -> id(paper) -> (the paper, its card)
        self.by_object: dict[int, dict[int, tuple[Paper, tuple[Pattern, TextPattern]]]] = {}
        self.papers: list[Paper] = []  # this edition's
        self.disabled = ""
        self.why: Memo[tuple[str, ...], str] = Memo()  # reasons lines by the reasons

    # -------------------------------------------------------- edition

    def begin_edition(self, papers: list[Paper]) -> None:
        """Compile the cards of this edition's papers; cards of papers that are still
        candidates (a weekly edition after the daily one) are kept, the others dropped."""
        keep = set(papers)
        self.cards = {k: v for k, v in self.cards.items() if k[0] in keep}
        self.plain = {k: v for k, v in self.plain.items() if k[0] in keep}
        self.by_object.clear()
        self.papers = list(dict.fromkeys(papers))
        if self.disabled or not papers:
            return
        level = self.r.levels[0]
        todo = [p for p in self.papers if (p, level) not in self.cards]
        try:
            self._compile_cards(todo, level, plain=False)
        except _Unsupported as exc:
            self._disable(str(exc))

    # -------------------------------------------------------- digests

    def render_digest(
        self, fields: dict[str, str], picks: Sequence[Scored], level: int, vote_url: str = ""
    ) -> Output:
        """The digest's HTML and text, the parts they were joined from (the skeleton's
        pieces and the cards are the same objects for every subscriber) with the parts'
        quoted-printable, and the HTML's UTF-8 size."""
        if self.disabled or bool(vote_url) != self.votes:
            return Output(*self._naive(fields, picks, level, vote_url))
        reasons = self._reasons(picks)
        try:
            frags = self._card_frags([p.paper for p in picks], level)  # cards first: the
            bare = [p.paper for p, r in zip(picks, reasons, strict=True) if not r]
            plain = self._plain_frags(bare, level) if bare else []  # skeleton needs card_tag
            html_sk, text_sk = self._skeleton(DIGEST_HTML, DIGEST_TEXT, fields, len(picks))
        except _Unsupported as exc:
            self._disable(str(exc))
            return Output(*self._naive(fields, picks, level, vote_url))
        votes = [vote_links(vote_url, p.paper.id) for p in picks] if vote_url else None
        out = self._joined(fields, reasons, frags, plain, html_sk, text_sk, votes)
        key = (DIGEST_HTML, self._shape(fields), len(picks))
        key = self.proof.get(key, key)
        if key not in self.verified:
            self.verified.add(key)
            naive = self._naive(fields, picks, level, vote_url)
            if not self._agrees(out.html, out.text, naive, "digest"):
                return Output(*naive)
        return out

    def _reasons(self, picks: Sequence[Scored]) -> list[str]:
        why = self.why
        known = why.get
        out = []
        for pick in picks:
            line = known(pick.reasons) or why.again(pick.reasons)
            if line is None:
                line = why.add(pick.reasons, reasons_line(pick))
            out.append(line)
        return out

    def _joined(
        self,
        fields: dict[str, str],
        reasons: list[str],
        frags: list[tuple[Pattern, TextPattern]],
        plain: list[tuple[str, str] | tuple[Pattern, TextPattern]],
        html_sk: Pattern,
        text_sk: TextPattern,
        votes: list[tuple[str, str]] | None = None,
    ) -> Output:
        """The digest's HTML and text, and the parts each was joined from; ``votes``: each
        card's "more / less like this" links, when digests carry them."""
        hvals: dict[Any, str | list[str]] = dict(fields)
        tvals: dict[Any, str | list[str]] = dict(fields)
        bare = iter(plain)
        wrapper = self.r.wrapper
        line = quick_line if self.quick else _long_line
        for i, (why, (hw, tw)) in enumerate(zip(reasons, frags, strict=True)):
            form = tw.card
            if why and form is not None and votes is None:  # the usual card: one reasons
                h0, esc, h1, t0, start, t1 = form  # line in each part
                hvals[i] = [h0, esc(why), h1]
                tvals[i] = [t0, line(wrapper, start + why) + "\n", t1]
            elif why or votes is not None:
                if not why:  # the card without reasons, with its vote links
                    hw, tw = cast(tuple[Pattern, TextPattern], next(bare))
                rv = {"reasons": why}
                if votes is not None:
                    rv["more_url"], rv["less_url"] = votes[i]
                hp: list[str] = []
                hw.parts(rv, hp)
                hvals[i] = hp
                tp: list[str] = []
                tw.parts(rv, tp)
                tvals[i] = tp
            else:
                hvals[i], tvals[i] = cast(tuple[str, str], next(bare))
        html_parts: list[str] = []
        html_sk.parts(hvals, html_parts)
        html = "".join(html_parts)
        text_parts: list[str] = []
        text_sk.parts(tvals, text_parts)
        text = "".join(text_parts)
        if text[:1] == "\n" or text[-1:] != "\n" or text[-2:] == "\n\n" or _BLANKS.search(text):
            raw, text = text, squeeze(text)
            if text != raw:  # blank lines squeezed across parts: the parts no longer add up
                text_parts = [text]
        return Output(html, text, tuple(html_parts), tuple(text_parts))

    def render_empty(self, fields: dict[str, str]) -> tuple[str, str]:
        naive = self.r.naive
        if self.disabled:
            return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        try:
            html_sk, text_sk = self._skeleton(EMPTY_HTML, EMPTY_TEXT, fields, 0)
        except _Unsupported as exc:
            self._disable(str(exc))
            return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        html = html_sk.fill(fields)
        text = squeeze(text_sk.fill(fields))
        key = (EMPTY_HTML, self._shape(fields), 0)
        if key not in self.verified:
            self.verified.add(key)
            if not self._agrees(html, text, naive(fields, (), EMPTY_HTML, EMPTY_TEXT), "empty"):
                return naive(fields, (), EMPTY_HTML, EMPTY_TEXT)
        return html, text

    # -------------------------------------------------------- helpers

    def _naive(
        self, fields: dict[str, str], picks: Sequence[Scored], level: int, vote_url: str = ""
    ) -> tuple[str, str]:
        cards = [card_of(p, level, vote_url) for p in picks]
        return self.r.naive(fields, cards, DIGEST_HTML, DIGEST_TEXT)

    def _agrees(self, html: str, text: str, naive: tuple[str, str], what: str) -> bool:
        if html == naive[0] and text == naive[1]:  # byte for byte
            return True
        self._disable(f"the {what} templates give different output when cards are reused")
        return False

    def _disable(self, why: str) -> None:
        if not self.disabled:
            log.warning(
                "rendering every email in full (slower): %s; keep per-subscriber values out "
                "of card templates and include cards with {%% include %r %%}",
                why,
                CARD_HTML,
            )
        self.disabled = why

    @staticmethod
    def _shape(fields: Mapping[str, str]) -> tuple[bool, ...]:
        return tuple([bool(fields[name]) for name in FIELDS])

    def _marked_fields(self, shape: tuple[bool, ...]) -> dict[str, str]:
        return {
            name: (self.field_marker[name] if on else "")
            for name, on in zip(FIELDS, shape, strict=True)
        }

    def _skeleton(
        self, html_name: str, text_name: str, fields: Mapping[str, str], count: int
    ) -> tuple[Pattern, TextPattern]:
        shape = self._shape(fields)
        key = (html_name, shape, count)
        found = self.skeletons.get(key)
        if found is not None:
            return found
        dummy = Card(
            id="", title="", url="", authors="", summary="", stats="", links=(), categories=""
        )
        context = {**self.r.constants, **self._marked_fields(shape), "cards": [dummy] * count}
        context[self.slot_var] = self._slot_html()
        mjml = render_template(self.html_skeleton_env, html_name, context)
        compiled = self._derived(key, mjml)
        if compiled is None:
            compiled = self._compiled(key, mjml)
        html = self._cut(compiled, count, html=True, what=html_name)
        text = render_template(self.text_skeleton_env, text_name, context)
        pair = (
            html,
            TextPattern(
                self._cut(text, count, html=False, what=text_name), self.r.wrapper, self.quick
            ),
        )
        self.skeletons[key] = pair
        return pair

    def _slot_html(self) -> str:
        tag = self.card_tag
        return f'<{tag} class="{self.slot}"></{tag}>' if tag else f"<!--{self.slot}-->"

    def _compiled(self, key: tuple[str, tuple[bool, ...], int], mjml: str) -> str:
        """The skeleton compiled in full; with two cards or more, kept as its family's
        pieces when they repeat."""
        html_name, shape, count = key
        html = mjml_to_html(mjml, html_name)
        compiled = inline_css(html)
        if count >= 2 and (html_name, shape) not in self.families:
            src = mjml.split(self._slot_html())
            mid = _split(self.slot_re, html)
            out = _split(self.slot_re, compiled)
            slots = {m.group(0) for m in self.slot_re.finditer(compiled)}
            if (
                all(len(p) == count + 1 and len(set(p[1:-1])) == 1 for p in (src, mid, out))
                and len(slots) == 1
            ):
                marker = self._slot_html()
                self.families[(html_name, shape)] = _Family(key, src, mid, out, marker, slots.pop())
        return compiled

    def _derived(self, key: tuple[str, tuple[bool, ...], int], mjml: str) -> str | None:
        """The compiled skeleton put together from its family's pieces, when its MJML and
        the MJML compiler's HTML (not premailer's) repeat the same pieces; else None."""
        html_name, shape, count = key
        family = self.families.get((html_name, shape))
        if family is None or count < 2:  # one slot alone is laid out differently
            return None
        marker = self._slot_html()
        if mjml != family.src.join(count) or (
            self.slot_re.sub(marker, mjml_to_html(mjml, html_name)) != family.mid.join(count)
        ):
            return None
        self.proof[key] = family.key
        return family.out.join(count)

    def _cut(self, compiled: str, slots: int, *, html: bool, what: str) -> Pattern:
        lits: list[str] = []
        holes: list[tuple[Any, Escape]] = []
        pos = 0
        seen = 0
        for m in self.marker_re.finditer(compiled):
            lits.append(compiled[pos : m.start()])
            pos = m.end()
            token = m.group(0)
            if token.startswith("<") or token == self.slot:
                holes.append((seen, same_text))
                seen += 1
                continue
            key = self.card_hole.get(token) or self.field_of[token]
            esc: Escape = same_text
            if html:
                esc = escape_attr if _in_tag(compiled, m.start()) else escape_text
            holes.append((key, esc))
        lits.append(compiled[pos:])
        if any(self.tok in lit.lower() for lit in lits):
            raise _Unsupported(f"{what} changes a per-subscriber value before showing it")
        if seen != slots:
            raise _Unsupported(f"{what} shows {seen} card slots for {slots} cards")
        return Pattern(lits, holes)

    def _card_frags(self, papers: Sequence[Paper], level: int) -> list[tuple[Pattern, TextPattern]]:
        # By the paper object first: hashing a Paper (all its fields) for every card of
        # every digest is a good part of the cost of a digest.
        by_object = self.by_object.setdefault(level, {})
        known = by_object.get
        out = []
        for p in papers:
            hit = known(id(p))
            if hit is None or hit[0] is not p:
                break
            out.append(hit[1])
        else:
            return out
        cards = self.cards
        missing = [p for p in papers if (p, level) not in cards]
        if missing:
            self._compile_cards(list(dict.fromkeys(missing)), level, plain=False)
        frags = [cards[(p, level)] for p in papers]
        for p, frag in zip(papers, frags, strict=True):
            by_object[id(p)] = (p, frag)  # the paper is kept: its id stays its own
        return frags

    def _plain_frags(
        self, papers: Sequence[Paper], level: int
    ) -> list[tuple[str, str] | tuple[Pattern, TextPattern]]:
        """The cards without reasons; the first time one is needed, those of the whole
        edition are compiled together (one at a time would cost far more)."""
        plain = self.plain
        missing = [p for p in papers if (p, level) not in plain]
        if missing:
            todo = missing
            if level == self.r.levels[0] and self.papers:
                todo = [p for p in self.papers if (p, level) not in plain] + missing
            self._compile_cards(list(dict.fromkeys(todo)), level, plain=True)
        return [plain[(p, level)] for p in papers]

    def _compile_cards(self, papers: list[Paper], level: int, *, plain: bool) -> None:
        fields = self._marked_fields((True,) * len(FIELDS))
        wrapper = self.r.wrapper
        for start in range(0, len(papers), BATCH):
            batch = papers[start : start + BATCH]  # many: a premailer run costs 20 ms
            cards = [self.r.card(p, level) for p in batch]
            if not plain:
                cards = [replace(c, reasons=self.reasons_marker) for c in cards]
            if self.votes:
                more, less = list(self.card_hole)[1:]
                cards = [replace(c, more_url=more, less_url=less) for c in cards]
            context = {**self.r.constants, **fields, "cards": cards}
            htmls = self._card_htmls(cards, context)
            texts = self._between(
                render_template(self.text_cards_env, DIGEST_TEXT, context), len(batch), False
            )
            if not self.card_tag and htmls:
                self.card_tag = _element_tag(htmls[0])
            for paper, html, text in zip(batch, htmls, texts, strict=True):
                if not text.endswith("\n"):
                    raise _Unsupported(f"{CARD_TEXT} does not end with a new line")
                if plain and not self.votes:
                    if self.tok in html or self.tok in text:
                        raise _Unsupported(f"{CARD_HTML} uses a per-subscriber value")
                    self.plain[(paper, level)] = (html, wrapper.lines(text))
                    continue
                html_card = self._cut(html, 0, html=True, what=CARD_HTML)
                text_card = self._cut(text, 0, html=False, what=CARD_TEXT)
                own = {"more_url", "less_url"} if plain else {"reasons", "more_url", "less_url"}
                for pattern, what in ((html_card, CARD_HTML), (text_card, CARD_TEXT)):
                    for key, _ in pattern.holes:
                        if key not in own:
                            raise _Unsupported(f"{what} uses the per-subscriber value {key!r}")
                text_pattern = TextPattern(text_card, wrapper, self.quick)
                if plain:
                    self.plain[(paper, level)] = (html_card, text_pattern)
                    continue
                text_pattern.card = _card_form(html_card, text_pattern)
                self.cards[(paper, level)] = (html_card, text_pattern)

    def _card_htmls(self, cards: list[Card], context: dict[str, Any]) -> list[str]:
        """Each card's compiled HTML. Cards alike in which fields are empty and which links
        they have (a *shape*) differ only in their text: one card per shape, its fields
        marked, goes through MJML and premailer, and the others are that card with their
        own text escaped in, when their MJML is the marked card's with their text in and
        the shape's first card compiled in full agrees. Other cards (text with "&", "<"
        or ">", a template that changes a field) are compiled in full."""
        src = render_template(self.html_cards_env, DIGEST_HTML, context)
        sources = self._between(src, len(cards), True)
        shapes: dict[tuple[Any, ...], tuple[Card, list[int]]] = {}
        values: list[dict[str, str] | None] = []
        for i, card in enumerate(cards):
            marked, vals = self._marked_card(card)
            key: tuple[Any, ...] = (marked.title, marked.url, marked.authors, marked.summary)
            key += (marked.stats, marked.categories, marked.id, marked.links, marked.tldr)
            values.append(vals)
            if vals is not None:
                shapes.setdefault(key, (marked, []))[1].append(i)
        shape_list = list(shapes.values())
        if shape_list:
            marked_src = self._between(
                render_template(
                    self.html_cards_env,
                    DIGEST_HTML,
                    {**context, "cards": [m for m, _ in shape_list]},
                ),
                len(shape_list),
                True,
            )
            for (_, members), msrc in zip(shape_list, marked_src, strict=True):
                for i in list(members):
                    vals = values[i]
                    assert vals is not None
                    want = self.card_marker_re.sub(_escaped(vals), msrc)
                    if want != sources[i]:
                        members.remove(i)
                        values[i] = None
        shape_list = [(m, members) for m, members in shape_list if members]
        full = [i for i, v in enumerate(values) if v is None]
        probes = [members[0] for _, members in shape_list]
        todo = [m for m, _ in shape_list] + [cards[i] for i in probes] + [cards[i] for i in full]
        out: list[str] = [""] * len(cards)
        if not todo:
            return out
        compiled = self._between(
            compile_mjml(
                render_template(self.html_cards_env, DIGEST_HTML, {**context, "cards": todo}),
                DIGEST_HTML,
            ),
            len(todo),
            True,
        )
        n = len(shape_list)
        for i, html in zip(full, compiled[2 * n :], strict=True):
            out[i] = html
        again: list[int] = []
        for k, (_, members) in enumerate(shape_list):
            pattern = self._card_pattern(compiled[k])
            probe = members[0]
            vals = values[probe]
            if pattern is None or vals is None or pattern.fill(vals) != compiled[n + k]:
                again.extend(members)
                continue
            out[probe] = compiled[n + k]
            for i in members[1:]:
                out[i] = pattern.fill(cast(dict[str, str], values[i]))
        if again:  # a shape the shortcut does not reproduce: its cards the long way
            again_src = render_template(
                self.html_cards_env, DIGEST_HTML, {**context, "cards": [cards[i] for i in again]}
            )
            for i, html in zip(
                again,
                self._between(compile_mjml(again_src, DIGEST_HTML), len(again), True),
                strict=True,
            ):
                out[i] = html
        return out

    def _marked_card(self, card: Card) -> tuple[Card, dict[str, str] | None]:
        """The card with a marker for each field that has text, and each marker's text
        (None when some text holds "&", "<" or ">", or a marker)."""
        markers = self.card_markers
        vals: dict[str, str] = {}

        def mark(j: int, text: str) -> str:
            if not text:
                return ""
            vals[markers[j]] = text
            return markers[j]

        links = tuple((label, mark(7 + k, url)) for k, (label, url) in enumerate(card.links[:8]))
        marked = replace(
            card,
            id=mark(0, card.id),
            title=mark(1, card.title),
            url=mark(2, card.url),
            authors=mark(3, card.authors),
            summary=mark(4, card.summary),
            stats=mark(5, card.stats),
            categories=mark(6, card.categories),
            links=links + card.links[8:],
            tldr=mark(15, card.tldr),
        )
        for text in vals.values():
            if "&" in text or "<" in text or ">" in text or self.tok in text:
                return marked, None
        return marked, vals

    def _card_pattern(self, compiled: str) -> Pattern | None:
        """A marked card's compiled HTML cut at its markers (escaped as the serializer
        writes text and attributes); None when a marker was changed on the way."""
        lits: list[str] = []
        holes: list[tuple[Any, Escape]] = []
        pos = 0
        for m in self.card_marker_re.finditer(compiled):
            lits.append(compiled[pos : m.start()])
            esc = escape_attr if _in_tag(compiled, m.start()) else escape_text
            holes.append((m.group(), esc))
            pos = m.end()
        lits.append(compiled[pos:])
        if any(self.card_tok in lit for lit in lits):
            return None
        return Pattern(lits, holes)

    def _between(self, compiled: str, count: int, html: bool) -> list[str]:
        if html:
            begin = re.compile(rf"<!--\s*{re.escape(self.begin)}\s*-->")
            end = re.compile(rf"<!--\s*{re.escape(self.end)}\s*-->")
        else:
            begin, end = re.compile(re.escape(self.begin)), re.compile(re.escape(self.end))
        pieces = []
        pos = 0
        while True:
            b = begin.search(compiled, pos)
            if b is None:
                break
            e = end.search(compiled, b.end())
            if e is None:
                break
            piece = compiled[b.end() : e.start()]
            if html and piece.endswith("\n"):
                # the line end the HTML serializer writes after an element followed by
                # another (here the end marker); the skeleton has the ones between cards
                piece = piece[:-1]
            pieces.append(piece)
            pos = e.end()
        if len(pieces) != count:
            raise _Unsupported(
                f"{DIGEST_HTML if html else DIGEST_TEXT} shows {len(pieces)} of {count} cards"
            )
        return pieces


def _escaped(values: dict[str, str]) -> Callable[[re.Match[str]], str]:
    """A marker's text as Jinja's autoescape writes it (for ``re.sub``)."""

    def sub(m: re.Match[str]) -> str:
        return str(markupsafe.escape(values[m.group()]))

    return sub


def _long_line(wrapper: Wrapper, line: str) -> str:
    return wrapper.line(line)


def _card_form(html: Pattern, text: TextPattern) -> CardForm | None:
    """The usual card, ready for its reasons: its HTML with one hole (the reasons) and
    its text a block of lines, the line "  Why: <reasons>", another block."""
    items = text.items
    if html.one is None or html.one[0] != "reasons" or len(items) != 3:
        return None
    first, why, last = items
    if not (isinstance(first, str) and isinstance(last, str) and isinstance(why, tuple)):
        return None
    lits, keys, order = why
    if keys != ("reasons",) or order != (True, False):
        return None
    return html.lits[0], html.one[1], html.lits[1], first, lits[0], last


def _element_tag(html: str) -> str:
    """The tag of the one element ``html`` is, when it looks like one; else ""."""
    m = re.match(r"<([A-Za-z][\w-]*)[\s>]", html)
    return m.group(1) if m and html.endswith(f"</{m.group(1)}>") else ""


def _split(pattern: re.Pattern[str], text: str) -> list[str]:
    """``text`` cut at each match of ``pattern`` (``re.split`` would add its groups)."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
    out.append(text[pos:])
    return out


def _in_tag(html: str, pos: int) -> bool:
    """Whether ``pos`` is inside a tag (an attribute value) rather than in text."""
    return html.rfind("<", 0, pos) > html.rfind(">", 0, pos)
