"""A profile as a query: its weighted stems, phrases, vectors and vetoes, and what a paper
matched of it (for the reasons shown to the reader)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..models import Paper, Profile
from . import _text as text
from ._lexical import LexicalIndex

KEYWORD_FACTOR = 2.0  # an explicit keyword counts as much as two mentions in the interests
REASON_TERMS = 3  # words or phrases named in "matches ..."
COMMON_WORD_IDF = 1.2  # words in more than ~30% of the edition's papers are not named as reasons


@dataclass
class Query:
    """A profile encoded for ranking (independent of the edition)."""

    terms: dict[str, float]  # stem -> weight from the interests and single-word keywords
    surface: dict[str, str]  # stem -> the word as the subscriber wrote it
    partners: dict[str, list[tuple[str, str, str]]]  # stem -> (other stem, phrase key, label)
    phrases: list[tuple[str, float]]  # phrase keys (stems) with weights
    keywords: list[tuple[str, str, float]]  # (key, as written, weight) for reasons
    vector: np.ndarray | None  # raw embedding of the interests text
    liked: np.ndarray  # (m, d) raw embeddings of liked papers
    liked_titles: list[str]
    liked_title_keys: list[str]
    liked_ids: frozenset[str]
    authors: dict[str, str]  # author key -> name as written
    categories: dict[str, str]  # canonical code -> code as written
    restrict: bool
    exclude_categories: frozenset[str]
    exclude_terms: list[str]  # phrase keys
    max_papers: int
    min_score: float
    # Queries with equal ``text`` have equal terms, surface, partners, phrases and keywords
    # (what ``matched_terms`` reads): a number per (interests, keywords) seen in the run.
    text: int = 0


def matched_terms(
    lex: LexicalIndex, q: Query, d: int, found: Sequence[int], limit: int = 3
) -> list[str]:
    """What the paper matches, as the subscriber wrote it: keywords first (by weight), then
    the words of the interests that weigh most in this paper's score, two adjacent ones
    shown as a phrase where the paper has them side by side."""
    out: list[str] = []
    terms = lex.terms
    if q.keywords:
        covered: set[str] = set()
        doc = lex.doc_terms[d]
        for key, written, _ in q.keywords:
            if (key in doc) if " " not in key else lex.matches(key, d):
                out.append(written)
                if len(out) >= limit:
                    return out
                covered.update(key.split())
        top = [s for s in map(terms.__getitem__, found) if s not in covered]
    else:
        top = [terms[t] for t in found]
    used: set[str] = set()
    partners = q.partners
    for s1 in top:
        if s1 in used:
            continue
        used.add(s1)
        label = None
        for s2, key, pair in partners.get(s1, ()):
            if s2 in top and s2 not in used and lex.matches(key, d):
                label = pair
                used.add(s2)
                break
        if label is None:
            if lex.idf_of[s1] < COMMON_WORD_IDF:
                continue  # true, but says nothing: most papers of the edition have it
            label = q.surface.get(s1, s1)
        out.append(label)
        if len(out) >= limit:
            break
    return out


def paper_text(p: Paper) -> str:
    return f"{p.title}. {p.title}. {p.abstract}"


def profile_parts(p: Profile) -> list[str]:
    """The texts whose tokens make the interests vector."""
    return [t for t in (p.interests, *(k.term for k in p.keywords)) if t.strip()]


def liked_texts(p: Profile, liked: Sequence[Paper]) -> list[str]:
    texts = [f"{x.title}. {x.title}. {x.abstract}" for x in liked]
    texts += [f"{t}. {t}. {a}" for t, a in p.liked_texts]
    return texts


def profile_key(p: Profile, liked: Sequence[Paper]) -> tuple[object, ...]:
    """What the query of ``p`` depends on: profiles equal in all of it share one query."""
    return (
        p.interests,
        p.keywords,
        p.authors,
        p.categories,
        p.category_mode,
        p.exclude,
        p.liked,
        p.liked_texts,
        tuple(x.id for x in liked) if liked else (),
        p.max_papers,
        p.min_score,
    )


def build_query(
    p: Profile,
    liked: Sequence[Paper],
    vector: np.ndarray,
    liked_vecs: np.ndarray,
    *,
    balanced: bool = True,
) -> Query:
    """``balanced``: the interests' words weighed sentence by sentence (``sentence_terms``),
    else each word by the square root of its count in the whole text."""
    source = p.interests
    if not source and not p.keywords:
        # Only liked papers: their titles stand in for the interests.
        source = ". ".join([x.title for x in liked] + [t for t, _ in p.liked_texts])
    terms, surface, pairs = _source_terms(source, balanced)
    # Keywords and quoted phrases keep their weight relative to an average word of the
    # interests (1 when each word weighs its count's square root).
    unit = sum(terms.values()) / len(terms) if balanced and terms else 1.0
    phrases: list[tuple[str, float]] = []
    keywords: list[tuple[str, str, float]] = []
    for key, quoted in _quoted(p.interests):
        phrases.append((key, unit))
        keywords.append((key, quoted, 1.0))
    if p.keywords:
        terms, surface = dict(terms), dict(surface)
        for kw in p.keywords:
            key = _phrase_key(kw.term)
            if not key:
                continue
            keywords.append((key, kw.term, kw.weight))
            if " " in key:
                phrases.append((key, KEYWORD_FACTOR * kw.weight * unit))
            else:
                terms[key] = terms.get(key, 0.0) + KEYWORD_FACTOR * kw.weight * unit
                surface.setdefault(key, kw.term)
        keywords.sort(key=lambda k: -k[2])
    liked_titles = [x.title for x in liked] + [t for t, _ in p.liked_texts]
    ex_cats, ex_terms = _exclusions(p.exclude)
    return Query(
        terms=terms,
        surface=surface,
        partners=pairs,
        phrases=phrases,
        keywords=keywords,
        vector=vector if p.interests or p.keywords else _mean_or_none(liked_vecs),
        liked=liked_vecs,
        liked_titles=liked_titles,
        liked_title_keys=[_title_key(t) for t in liked_titles],
        liked_ids=frozenset(p.liked),
        authors=_authors(p.authors),
        categories=_categories(p.categories),
        restrict=p.category_mode == "restrict",
        exclude_categories=ex_cats,
        exclude_terms=ex_terms,
        max_papers=p.max_papers,
        min_score=p.min_score,
        text=_text_number((source, tuple(keywords), balanced)),
    )


# Parts of queries shared by many profiles, made once. Never mutate what these return.

_TextKey = tuple[str, tuple[tuple[str, str, float], ...], bool]
_texts: dict[_TextKey, int] = {}
_numbers = itertools.count(1)


def _text_number(key: _TextKey) -> int:
    """A number for the query text ``key``, the same within the run, never reused."""
    number = _texts.get(key)
    if number is None:
        if len(_texts) >= 8192:
            _texts.clear()
        number = _texts[key] = next(_numbers)
    return number


@lru_cache(maxsize=2048)
def _source_terms(
    source: str, balanced: bool = True
) -> tuple[dict[str, float], dict[str, str], text.Pairs]:
    if not balanced:
        counts, surface, pairs = text.parse_terms(source)
        return {s: math.sqrt(c) for s, c in counts.items()}, surface, pairs
    # Each sentence parsed once: its counts give its weights, and the sentences' surfaces
    # and pairs, put together in order, are those of the whole text (a pair never spans a
    # sentence's end, which is a break).
    parsed = [text.parse_terms(sentence) for sentence in _SENTENCE_END.split(source)]
    if len(parsed) == 1:
        counts, surface, pairs = parsed[0]
        return _balanced(counts, {}), surface, pairs
    terms: dict[str, float] = {}
    surface, pairs = {}, {}
    for counts, words, found in parsed:
        _balanced(counts, terms)
        for s, word in words.items():
            surface.setdefault(s, word)
        for s, partners in found.items():
            pairs.setdefault(s, []).extend(partners)
    return terms, surface, pairs


# A sentence ends at . ! ? or ; followed by space and a capital, a digit, "(" or a quote.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9(\"])")


def sentence_terms(source: str) -> dict[str, float]:
    """Stem weights of free text, sentence by sentence: within a sentence a stem weighs the
    square root of its count divided by the square root of the sentence's total, summed
    over the sentences. A sentence's words then weigh together only the square root of its
    length, so a short first sentence (a title such as "Graphics.") is not drowned by a
    long description after it (on the dev week, BM25 alone goes from 0.234 to 0.354
    nDCG@10). One sentence: the same proportions as counting over the whole text."""
    out: dict[str, float] = {}
    for sentence in _SENTENCE_END.split(source):
        _balanced(text.parse_terms(sentence)[0], out)
    return out


def _balanced(counts: dict[str, int], out: dict[str, float]) -> dict[str, float]:
    """Add one sentence's stem weights (its stem ``counts``) to ``out``; returns ``out``."""
    if counts:
        roots = {s: math.sqrt(c) for s, c in counts.items()}
        norm = math.sqrt(sum(roots.values()))
        for s, r in roots.items():
            out[s] = out.get(s, 0.0) + r / norm
    return out


@lru_cache(maxsize=2048)
def _quoted(interests: str) -> tuple[tuple[str, str], ...]:
    """(phrase key, phrase as written) of the phrases quoted in the interests."""
    out = []
    for quoted in text.quoted_phrases(interests):
        key = _phrase_key(quoted)
        if key:
            out.append((key, quoted))
    return tuple(out)


_phrase_key = lru_cache(maxsize=16384)(text.phrase_key)
_author_key = lru_cache(maxsize=16384)(text.author_key)


@lru_cache(maxsize=2048)
def _exclusions(exclude: tuple[str, ...]) -> tuple[frozenset[str], list[str]]:
    cats = frozenset(text.canonical_category(e) for e in exclude if text.is_category(e))
    keys = [_phrase_key(e) for e in exclude if not text.is_category(e)]
    return cats, [k for k in keys if k]


@lru_cache(maxsize=2048)
def _authors(authors: tuple[str, ...]) -> dict[str, str]:
    return {_author_key(a): a for a in authors if _author_key(a)}


@lru_cache(maxsize=2048)
def _categories(categories: tuple[str, ...]) -> dict[str, str]:
    return {text.canonical_category(c): c for c in categories}


def title_key(title: str) -> str:
    return " ".join(text.words(title))


_title_key = lru_cache(maxsize=4096)(title_key)


def _mean_or_none(vecs: np.ndarray) -> np.ndarray | None:
    return vecs.mean(axis=0) if len(vecs) else None
