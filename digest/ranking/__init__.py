"""Ranking: each subscriber's best papers of an edition, best first, each with its reasons.

``Ranker.prepare`` indexes and embeds an edition's papers once (``_corpus``); profiles are
encoded as queries (``_query``: weighted stems, phrases, vectors, vetoes) and scored in
batches: BM25 over stemmed title and abstract (``_lexical``, ``_text``) fused with an offline
static embedding (``_embed``), liked papers, followed authors, categories, popularity and
freshness; ``_votes`` learns from each subscriber's votes (and liked and disliked papers);
``_select`` picks the best with near-duplicates dropped, ``_floor`` leaves out those not
relevant in absolute terms and ``_reasons`` words why each was picked. ``Picker`` ranks one
edition with what the store knows of each subscriber (papers already sent, their votes, the
papers voted on or liked that are not in the edition).
"""

from __future__ import annotations

from ._corpus import Corpus
from ._picker import Picker
from ._ranker import Ranker
from ._text import CATEGORY_ALIASES

__all__ = ["CATEGORY_ALIASES", "Corpus", "Picker", "Ranker"]
