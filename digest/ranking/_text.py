"""Text helpers for ranking: tokens, English stems, phrases, author names, arXiv categories."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

_WORD = re.compile(r"[a-z0-9]+")
_QUOTED = re.compile(r"\"([^\"]+)\"")
_CATEGORY = re.compile(
    r"^(cs|math|stat|eess|econ|q-bio|q-fin|physics|astro-ph|cond-mat|nlin|gr-qc|hep-ex|hep-lat"
    r"|hep-ph|hep-th|math-ph|nucl-ex|nucl-th|quant-ph)(\.[A-Za-z-]+)?$"
)
# arXiv lists both codes of an alias pair; treat each pair as one category.
CATEGORY_ALIASES = {
    "cs.SY": "eess.SY",
    "math.IT": "cs.IT",
    "stat.TH": "math.ST",
    "cs.NA": "math.NA",
    "q-fin.EC": "econ.GN",
    "math.MP": "math-ph",
}

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves via etc e g ie eg
    may might must shall us using use used based paper propose proposed present show shows
    results new approach method methods""".split()  # noqa: SIM905
)

_stemmer = Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """Lower case without accents: 'Sébastien' -> 'sebastien'."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(text: str) -> list[str]:
    """Folded word tokens, stopwords removed."""
    return [w for w in _WORD.findall(fold(text)) if w not in STOPWORDS]


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def stems(text: str) -> list[str]:
    """Stemmed word tokens of ``text`` (stopwords removed)."""
    return [stem(w) for w in words(text)]


_BREAK = re.compile(r"[.,;:!?()\[\]{}\"/\n]")


Pairs = dict[str, list[tuple[str, str, str]]]


def parse_terms(text: str) -> tuple[dict[str, int], dict[str, str], Pairs]:
    """One pass over free text: stem counts, each stem's first word as written (folded), and
    the two-word phrases (adjacent non-stopwords in one clause; stopwords between them are
    kept in the label), indexed by either stem: {stem: [(other stem, phrase key, label)]}
    where the phrase key is the two stems in text order."""
    folded = fold(text)
    counts: dict[str, int] = {}
    surface: dict[str, str] = {}
    pairs: Pairs = {}
    prev = ""
    prev_start = prev_end = 0
    for m in _WORD.finditer(folded):
        word = m.group(0)
        if word in STOPWORDS:
            continue
        s = stem(word)
        counts[s] = counts.get(s, 0) + 1
        if s not in surface:
            surface[s] = word
        start, end = m.span()
        if (
            prev
            and prev != s
            and end - prev_start <= 40
            and not _BREAK.search(folded, prev_end, start)
        ):
            entry = (f"{prev} {s}", folded[prev_start:end])
            pairs.setdefault(prev, []).append((s, *entry))
            pairs.setdefault(s, []).append((prev, *entry))
        prev, prev_start, prev_end = s, start, end
    return counts, surface, pairs


def quoted_phrases(text: str) -> list[str]:
    """Phrases written in double quotes inside free text."""
    return [p.strip() for p in _QUOTED.findall(text) if p.strip()]


def phrase_key(text: str) -> str:
    """The stems of a phrase joined by spaces: the form phrase matching works on."""
    return " ".join(stems(text))


def is_category(term: str) -> bool:
    return bool(_CATEGORY.match(term.strip()))


def canonical_category(code: str) -> str:
    code = code.strip()
    return CATEGORY_ALIASES.get(code, code)


def author_key(name: str) -> str:
    """The key a followed author is found by: the folded last name, then the given name
    as written: in full ('Xiaoqian Wu' -> 'wu xiaoqian') or as an initial ('X. Wu' -> 'wu x').

    Accents, case and "Last, First" order do not matter; a full given name matches only
    that given name (not every "X. Wu"), an initial every given name it starts.
    """
    last, given, initial = _name(name)
    if not last:
        return ""
    if not given:
        return last
    return f"{last} {given[0] if initial else given}"


def author_keys(name: str) -> tuple[str, ...]:
    """The keys a paper's author is indexed by: the initial key ('wu x') always, and the
    full key ('wu xiaoqian') when the given name is written in full."""
    last, given, initial = _name(name)
    if not last:
        return ()
    if not given:
        return (last,)
    if initial:
        return (f"{last} {given[0]}",)
    return (f"{last} {given[0]}", f"{last} {given}")


_SUFFIXES = frozenset(("jr", "sr", "ii", "iii", "phd"))


@lru_cache(maxsize=65_536)
def _name(name: str) -> tuple[str, str, bool]:
    """(last name, first given name, whether that given name is an initial), folded,
    hyphens dropped ('Jean-Pierre' -> 'jeanpierre'); an initial is one letter, a letter
    or two with a dot ('Y.', 'Xq.'), or up to three capitals ('JP')."""
    if "," in name:
        last, _, first = name.partition(",")
        name = f"{first} {last}"
    tokens = []
    for raw in name.split():
        for piece in re.findall(r"[^.]+\.?", raw):  # "J.-P." -> "J.", "-P."
            word = re.sub(r"[^a-z0-9'-]", "", fold(piece))
            if word.strip("-'") and word not in _SUFFIXES:
                tokens.append((word, piece))
    if not tokens:
        return "", "", False
    last = tokens[-1][0].replace("-", "")
    if len(tokens) == 1:
        return last, "", False
    word, piece = tokens[0]
    letters = re.sub(r"[^A-Za-z]", "", piece)
    initial = (
        len(word.strip("-'")) == 1
        or (piece.endswith(".") and len(letters) <= 2)
        or (letters.isupper() and len(letters) <= 3)
    )
    given = word.replace("-", "").strip("'")
    return last, given, initial
