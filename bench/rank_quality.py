"""Ranking quality and speed on a week of real arXiv papers (tests/data/eval).

Protocol (docs: DESIGN.md, "Data at hand"): for each category with at least 15 papers (cs.AI
and cs.LG left out as too broad, and categories whose arXiv description is under 8 words),
a subscriber whose interests are "<name>. <description>" ranks every paper; a paper is
relevant when it carries that category. Alias pairs (cs.SY = eess.SY, ...) count as one
label, under arXiv's canonical code. Reported: mean nDCG@10, P@10 and MAP@100 over the
categories, for the full ranker and for BM25-only and embedding-only rankers built from the
same code with the other signals switched off. Then the time to rank 3,000 papers for 1,000
profiles, and (with --newsletter) 1,000 papers for 100,000 profiles: each speed test in a
fresh process, so no cache (the tokenizer's words, the query and phrase caches) is warm from
the quality runs; the model's loading is timed apart. The profiles are the benchmarks'
workload (bench/workload.py: each subscriber's interests two sentences of real abstracts,
keywords from real titles, limits of their own; ``--workload taxonomy``: the older profiles,
one of the 152 arXiv category descriptions each plus two keywords).

With --fingerprint, each speed test also prints a SHA-256 of every pick (id, score and
reasons, in order) for every profile: two revisions that rank alike print the same. It ranks
with the relevance floor off, so that it covers the ranking itself (the floor only leaves
out some of the picks; tests/test_rank_votes.py checks that the others are unchanged).
With --votes N, every profile of the speed tests also has N votes (about a third up) on
papers outside the edition, made before the timed part: the vote model's cost
(bench/feedback_eval.py measures what it learns). With --splits K, the quality table is
given on K random splits of the categories into halves as well. ``--set name=value``
changes a ``[ranking]`` key for every ranker here (the speed tests too), e.g. to check that
a change switched off ranks exactly as before: ``--fingerprint --set smoothing=0``. With
``--against name=value`` (repeatable), each speed test then ranks the same profiles again
``--rounds`` times with the settings as they are and with those keys changed, alternately,
each round with new rankers, in the same process: the CPU seconds of ranking (the edition
prepared apart) for each, and their ratio, e.g. what a knob costs per profile.

Run: .venv/bin/python bench/rank_quality.py [--per-category] [--newsletter] [--fingerprint]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# One core, as the targets say: pin the process and keep numpy's BLAS and the tokenizer
# single-threaded. This must happen before numpy is imported (by digest.rank).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

from digest.config import Ranking  # noqa: E402
from digest.models import Keyword, Paper, Profile  # noqa: E402
from digest.ranking import Corpus, Ranker  # noqa: E402
from digest.ranking._text import CATEGORY_ALIASES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "eval"
NOW = datetime(2025, 7, 5, tzinfo=UTC)
BROAD = {"cs.AI", "cs.LG"}
MIN_PAPERS = 15
MIN_WORDS = 8


def load_papers(path: Path) -> list[Paper]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            out.append(
                Paper(
                    id=rec["id"],
                    title=rec["title"],
                    abstract=rec["abstract"],
                    categories=tuple(rec["categories"]),
                )
            )
    return out


def labels(paper: Paper) -> set[str]:
    return {CATEGORY_ALIASES.get(c, c) for c in paper.categories}


def eval_categories(papers: Sequence[Paper], taxonomy: dict[str, dict[str, str]]) -> list[str]:
    counts = Counter(c for p in papers for c in labels(p))
    out = []
    for code, n in sorted(counts.items()):
        if n < MIN_PAPERS or code in BROAD or code not in taxonomy:
            continue
        if len(taxonomy[code]["description"].split()) < MIN_WORDS:
            continue
        out.append(code)
    return out


def profile_for(code: str, taxonomy: dict[str, dict[str, str]]) -> Profile:
    entry = taxonomy[code]
    return Profile(
        email=f"{code.replace('.', '-')}@eval.invalid",
        interests=f"{entry['name']}. {entry['description']}",
        max_papers=100,
        min_score=0.0,
    )


def ndcg_at(ranked: Sequence[bool], n_relevant: int, k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, rel in enumerate(ranked[:k]) if rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return dcg / ideal if ideal else 0.0


def precision_at(ranked: Sequence[bool], k: int = 10) -> float:
    return sum(ranked[:k]) / k


def average_precision(ranked: Sequence[bool], n_relevant: int, k: int = 100) -> float:
    hits, total = 0, 0.0
    for i, rel in enumerate(ranked[:k]):
        if rel:
            hits += 1
            total += hits / (i + 1)
    return total / min(n_relevant, k) if n_relevant else 0.0


def evaluate(
    ranker: Ranker,
    corpus: Corpus,
    codes: Sequence[str],
    taxonomy: dict[str, dict[str, str]],
) -> dict[str, tuple[float, float, float]]:
    out = {}
    for code in codes:
        picks = ranker.rank(corpus, profile_for(code, taxonomy), top=100)
        rel = [code in labels(s.paper) for s in picks]
        n_rel = sum(code in labels(p) for p in corpus.papers)
        out[code] = (ndcg_at(rel, n_rel), precision_at(rel), average_precision(rel, n_rel))
    return out


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def synthetic_profiles(
    n: int, taxonomy: dict[str, dict[str, str]], seed: int = 7
) -> Iterator[Profile]:
    """Distinct profiles: one category's text plus keywords from two others."""
    rng = random.Random(seed)
    codes = sorted(c for c, e in taxonomy.items() if e["description"])
    for i in range(n):
        code = codes[i % len(codes)]
        entry = taxonomy[code]
        others = rng.sample(codes, 2)
        yield Profile(
            email=f"user{i}@bench.invalid",
            interests=f"{entry['name']}. {entry['description']}",
            keywords=tuple(Keyword(taxonomy[o]["name"].lower(), 1.0) for o in others),
            categories=(code,) if i % 3 == 0 else (),
            max_papers=10,
        )


def timing(
    papers: Sequence[Paper],
    n_papers: int,
    n_profiles: int,
    taxonomy: dict[str, dict[str, str]],
    fingerprint: bool = False,
    workload: str = "realistic",
    votes_each: int = 0,
    settings: dict[str, Any] | None = None,
    against: dict[str, Any] | None = None,
    rounds: int = 3,
) -> None:
    """One speed test; run it in a fresh process (``speed``) for cold caches."""
    from digest.ranking import _embed

    if workload == "realistic":
        sys.path.insert(0, str(ROOT))
        from bench.workload import profiles as workload_profiles

        profiles = workload_profiles(n_profiles)
    else:
        profiles = list(synthetic_profiles(n_profiles, taxonomy))
    m0 = time.perf_counter()
    _embed.model()  # loading the model is the process's start-up, not the edition's
    _embed._tokenizer()
    load = time.perf_counter() - m0
    weights = Ranking(**(settings or {}))
    ranker = Ranker(weights.model_copy(update={"relevance_floor": 0.0}) if fingerprint else weights)
    votes = synthetic_votes(papers[n_papers:], profiles, votes_each) if votes_each else None
    c0, t0 = time.process_time(), time.perf_counter()
    corpus = ranker.prepare(papers[:n_papers], NOW)
    t1 = time.perf_counter()
    picked = 0
    digest = hashlib.sha256() if fingerprint else None
    for picks in ranker.rank_many(corpus, profiles, votes=votes):
        picked += len(picks)
        if digest is not None:
            digest.update(repr([(s.paper.id, s.score, s.reasons) for s in picks]).encode())
    c2, t2 = time.process_time(), time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with_votes = f" with {votes_each} votes each" if votes_each else ""
    print(
        f"speed ({workload} profiles, a fresh process, model loaded in {load:.2f} s): "
        f"{len(corpus):,} papers x {n_profiles:,} profiles{with_votes}: prepare {t1 - t0:.2f} s, "
        f"rank {t2 - t1:.2f} s ({(t2 - t1) / n_profiles * 1e3:.2f} ms/profile), "
        f"total {t2 - t0:.2f} s wall, {c2 - c0:.2f} s CPU; {picked:,} picks; "
        f"peak RSS {rss:.0f} MB"
    )
    if digest is not None:  # hashed inside the timed loop: time it without --fingerprint
        print(f"  fingerprint of the picks (relevance floor off): {digest.hexdigest()}")
    if against:
        compare(papers[:n_papers], profiles, votes, weights, against, rounds)


def compare(
    papers: Sequence[Paper],
    profiles: Sequence[Profile],
    votes: dict[str, list[tuple[Paper, int]]] | None,
    weights: Ranking,
    against: dict[str, Any],
    rounds: int,
) -> None:
    """CPU seconds of ranking ``profiles`` with ``weights`` and with ``against`` changed in
    them, alternately (who goes first alternates too), each round with new rankers."""
    variants = {"as set": weights, "against": weights.model_copy(update=against)}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            ranker = Ranker(variants[name])
            corpus = ranker.prepare(papers, NOW)
            c0 = time.process_time()
            for _ in ranker.rank_many(corpus, profiles, votes=votes):
                pass
            cpu[name].append(time.process_time() - c0)
    mid = {name: sorted(xs)[len(xs) // 2] for name, xs in cpu.items()}
    n = len(profiles)
    print(f"  same process, {rounds} rounds, CPU s of ranking (median; each round):")
    for name, xs in cpu.items():
        label = "as set" if name == "as set" else f"with {against}"
        rows = ", ".join(f"{x:.2f}" for x in xs)
        print(f"    {label}: {mid[name]:.2f} s, {mid[name] / n * 1e3:.3f} ms/profile ({rows})")
    print(f"    as set / against: {mid['as set'] / max(mid['against'], 1e-9):.3f}x")


def synthetic_votes(
    pool: Sequence[Paper], profiles: Sequence[Profile], each: int, seed: int = 11
) -> dict[str, list[tuple[Paper, int]]]:
    """``each`` votes per profile on papers of ``pool`` (not in the edition), about a third
    of them up."""
    rng = random.Random(seed)
    out = {}
    for p in profiles:
        start = rng.randrange(len(pool))
        out[p.email] = [
            (pool[(start + 7 * k) % len(pool)], 1 if rng.random() < 0.3 else -1)
            for k in range(each)
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--papers", type=Path, default=DATA / "papers.jsonl")
    ap.add_argument("--taxonomy", type=Path, default=DATA / "taxonomy.json")
    ap.add_argument("--per-category", action="store_true", help="print each category's figures")
    ap.add_argument("--profiles", type=int, default=1000, help="profiles for the speed test")
    ap.add_argument("--speed-papers", type=int, default=3000, help="papers for the speed test")
    ap.add_argument(
        "--newsletter", action="store_true", help="also time 100,000 profiles x 1,000 papers"
    )
    ap.add_argument("--no-speed", action="store_true", help="skip the speed test")
    ap.add_argument(
        "--fingerprint", action="store_true", help="print a hash of every pick of the speed tests"
    )
    ap.add_argument("--workload", choices=("realistic", "taxonomy"), default="realistic")
    ap.add_argument("--votes", type=int, default=0, help="votes per profile in the speed tests")
    ap.add_argument("--splits", type=int, default=0, help="random halves of the categories")
    ap.add_argument("--set", action="append", help="a [ranking] key: name=value (repeatable)")
    ap.add_argument("--against", action="append", help="time against this key changed too")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --against (default 3)")
    ap.add_argument("--speed", nargs=2, type=int, help=argparse.SUPPRESS)  # papers, profiles
    args = ap.parse_args(argv)
    settings = settings_from(args.set or ())
    if args.speed:  # one speed test, in this fresh process
        papers = load_papers(args.papers)
        taxonomy = json.loads(args.taxonomy.read_text(encoding="utf-8"))
        timing(
            papers,
            *args.speed,
            taxonomy,
            args.fingerprint,
            args.workload,
            args.votes,
            settings,
            settings_from(args.against or ()),
            args.rounds,
        )
        return 0

    papers = load_papers(args.papers)
    taxonomy = json.loads(args.taxonomy.read_text(encoding="utf-8"))
    codes = eval_categories(papers, taxonomy)
    # The whole ranked list is measured (the top 100): the relevance floor, which only
    # decides how many of the best are sent, is off (bench/feedback_eval.py --floor).
    base = Ranking(**settings).model_copy(update={"relevance_floor": 0.0})
    if settings:
        print(f"[ranking] changed: {settings}")
    variants = {
        "full ranker": Ranker(base),
        "BM25 only": Ranker(bm25_only(base)),
        "embedding only": Ranker(embedding_only(base)),
    }
    print(f"quality: {len(papers):,} papers, {len(codes)} categories ({args.papers})")
    results = {}
    corpus: Corpus | None = None
    for name, ranker in variants.items():
        t0 = time.perf_counter()
        corpus = ranker.prepare(papers, NOW)
        results[name] = evaluate(ranker, corpus, codes, taxonomy)
        elapsed = time.perf_counter() - t0
        ndcg, p10, ap = (mean([x[i] for x in results[name].values()]) for i in range(3))
        print(
            f"  {name:<15} nDCG@10 {ndcg:.3f}   P@10 {p10:.3f}   MAP@100 {ap:.3f}"
            f"   ({elapsed:.1f} s)"
        )
    for k in range(args.splits):
        halves = list(codes)
        random.Random(k + 1).shuffle(halves)
        a, b = sorted(halves[: len(halves) // 2]), sorted(halves[len(halves) // 2 :])
        cells = []
        for side, half in (("A", a), ("B", b)):
            r = results["full ranker"]
            ndcg, p10, ap = (mean([r[c][i] for c in half]) for i in range(3))
            cells.append(f"{side} nDCG@10 {ndcg:.3f} P@10 {p10:.3f} MAP@100 {ap:.3f}")
        if k == 0:
            print("  full ranker on random halves of the categories:")
        print(f"    split {k + 1}: " + "   ".join(cells))
    if args.per_category:
        print(f"  {'category':<10} {'papers':>6}  " + "  ".join(f"{n:>14}" for n in variants))
        for code in codes:
            n_rel = sum(code in labels(p) for p in papers)
            cells = "  ".join(f"{results[n][code][0]:>14.3f}" for n in variants)
            print(f"  {code:<10} {n_rel:>6}  {cells}")
    if not args.no_speed:
        tests = [(args.speed_papers, args.profiles)] + (
            [(1000, 100_000)] if args.newsletter else []
        )
        for n_papers, n_profiles in tests:
            cmd = [sys.executable, __file__, "--speed", str(n_papers), str(n_profiles)]
            cmd += ["--papers", str(args.papers), "--taxonomy", str(args.taxonomy)]
            cmd += ["--workload", args.workload, "--votes", str(args.votes)]
            cmd += ["--fingerprint"] if args.fingerprint else []
            cmd += [f"--set={item}" for item in args.set or ()]
            cmd += [f"--against={item}" for item in args.against or ()]
            cmd += ["--rounds", str(args.rounds)]
            sys.stdout.flush()
            subprocess.run(cmd, check=True)
    return 0


def settings_from(items: Sequence[str]) -> dict[str, Any]:
    """``[ranking]`` keys from ``name=value`` items, each value read as the key's type."""
    out: dict[str, Any] = {}
    defaults = Ranking()
    for item in items:
        key, _, value = item.partition("=")
        if key not in Ranking.model_fields:
            raise SystemExit(f"--set {item}: no [ranking] key {key!r}")
        kind = type(getattr(defaults, key))
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def bm25_only(base: Ranking) -> Ranking:
    return base.model_copy(
        update={
            "semantic_weight": 0.0,
            "liked_weight": 0.0,
            "feedback": 0.0,
            "diversity": 0.0,
            "smoothing": 0.0,  # the neighbours come from the embeddings
        }
    )


def embedding_only(base: Ranking) -> Ranking:
    return base.model_copy(
        update={
            "lexical_weight": 0.0,
            "liked_weight": 0.0,
            "feedback": 0.0,
            "diversity": 0.0,
            "smoothing": 0.0,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
