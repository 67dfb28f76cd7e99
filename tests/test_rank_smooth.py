"""Sentence-balanced lexical queries and neighbour smoothing of the relevance."""

from __future__ import annotations

import dataclasses

import numpy as np

from digest.config import Ranking
from digest.models import Keyword, Profile
from digest.ranking._corpus import nearest
from digest.ranking._query import (
    KEYWORD_FACTOR,
    Query,
    _source_terms,
    build_query,
    sentence_terms,
)
from digest.ranking._ranker import Ranker, _Mask, _smooth
from digest.ranking._text import parse_terms, stem

from .test_rank import NOW, PAPERS

SEGMENTATION = "semantic segmentation of images"
LONG = (
    "Graphics. Covers all aspects of computer graphics, rendering, meshes, shading, "
    "animation, virtual reality, geometry processing and visualization of scientific data."
)


def profile(**kw: object) -> Profile:
    return dataclasses.replace(Profile(email="reader@example.org"), **kw)


def query(p: Profile, balanced: bool = True) -> Query:
    vec = np.zeros(256, dtype=np.float32)
    return build_query(p, (), vec, np.zeros((0, 256)), balanced=balanced)


def test_each_sentence_weighs_the_same() -> None:
    terms = sentence_terms(LONG)
    # The one-word first sentence weighs as much as the whole long sentence after it.
    title = terms[stem("graphics")]
    assert title > 2 * terms[stem("rendering")]
    # A stem in both sentences adds up its shares.
    assert terms[stem("graphics")] > terms[stem("meshes")] + 0.9
    # One sentence: the same proportions as counting over the whole text.
    one = sentence_terms("speech recognition of speech and audio")
    assert np.isclose(one[stem("speech")] / one[stem("audio")], np.sqrt(2))


def test_one_pass_gives_the_whole_texts_words_and_pairs() -> None:
    # Each sentence is parsed once; its words as written and its two-word phrases, put
    # together, are those of the whole text, in the same order.
    for source in (
        LONG,
        'Speech and audio: ASR; "text-to-speech" synthesis. Émile Zoé? 3D (vision). Naïve!',
        "spoken language. Spoken Language; models of speech. (Speech) models",
        "",
    ):
        terms, surface, pairs = _source_terms(source, True)
        _, whole_surface, whole_pairs = parse_terms(source)
        assert list(terms.items()) == list(sentence_terms(source).items())
        assert list(surface.items()) == list(whole_surface.items())
        assert list(pairs.items()) == list(whole_pairs.items())


def test_unbalanced_is_the_previous_weighting() -> None:
    q = query(profile(interests=LONG), balanced=False)
    assert q.terms[stem("graphics")] == np.sqrt(2)
    assert q.terms[stem("rendering")] == 1.0


def test_keywords_keep_their_weight_against_an_average_word() -> None:
    p = profile(interests=LONG, keywords=(Keyword("raytracing", 1.0),))
    q = query(p)
    words = [w for s, w in q.terms.items() if s != stem("raytracing")]
    assert np.isclose(q.terms[stem("raytracing")] / np.mean(words), KEYWORD_FACTOR)
    assert query(p, balanced=False).terms[stem("raytracing")] == KEYWORD_FACTOR
    # Keywords alone weigh as before.
    alone = query(profile(keywords=(Keyword("raytracing", 1.0),)))
    assert alone.terms[stem("raytracing")] == KEYWORD_FACTOR


def test_neighbours_leave_the_paper_out_best_first() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=(30, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    nb = nearest(v, 5, None)
    gram = v @ v.T
    assert np.array_equal(nb, nearest(v, 5, gram))
    for i in range(30):
        assert i not in nb[i]
        sims = gram[i, nb[i]]
        assert np.all(np.diff(sims) <= 0)
        others = np.delete(gram[i], [i, *nb[i]])
        assert sims[-1] >= others.max()
    assert nearest(v[:1], 5, None).shape == (1, 0)


def test_smoothing_keeps_each_rows_scale() -> None:
    rng = np.random.default_rng(5)
    rel = rng.normal(size=(4, 30)).astype(np.float32) * 0.8
    barred = np.zeros((4, 30), dtype=bool)
    barred[1, :5] = True
    mask = _Mask.of(barred)
    nb = nearest(rng.normal(size=(30, 8)).astype(np.float32), 5, None)
    out = _smooth(rel, nb, 0.35, mask)
    for r in range(4):
        keep = ~barred[r]
        assert np.isclose(out[r, keep].mean(), rel[r, keep].mean(), atol=1e-5)
        assert np.isclose(out[r, keep].std(), rel[r, keep].std(), atol=1e-5)
    assert out[0].tolist() != rel[0].tolist()
    assert _smooth(rel, nb, 0.0, mask) is rel


def test_smoothing_lifts_papers_among_relevant_neighbours() -> None:
    plain, smooth = Ranker(Ranking(smoothing=0.0)), Ranker(Ranking(smoothing=0.35))
    a, b = plain.prepare(PAPERS, NOW), smooth.prepare(PAPERS, NOW)
    q = plain.encode([profile(interests=SEGMENTATION)], {})
    before, sig = plain.score(a, q)
    after, _ = smooth.score(b, smooth.encode([profile(interests=SEGMENTATION)], {}))
    rel = sig.relevance[0]
    around = rel[b.neighbours(10)].mean(axis=1)
    lifted = after[0] - before[0]
    # The papers gaining most are those whose neighbours are more relevant than they are.
    assert np.corrcoef(around - rel, lifted)[0, 1] > 0.4
