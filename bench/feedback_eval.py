"""A reader's votes replayed over a week of arXiv editions (the FEEDBACK protocol), and the
relevance floor measured on the same replay.

Each day's papers (``day`` in tests/data/eval/papers.jsonl) are stored and ranked as one
edition through the run's own code path: ``Store.upsert_papers``, then
``Picker.pick_many`` (what ``digest run`` calls), which reads each subscriber's votes with
``Store.votes_of`` and the voted papers' text with ``Store.get_papers``. The topics: every
arXiv category with at least 15 papers in the week whose description has at least 8 words,
cs.AI and cs.LG left out (alias codes count as topics of their own: 38 topics). A topic's
profile is ``interests = "<name>. <description>"``, ``max_papers = 10``. The simulated
reader votes on each of the 10 papers shown (up when it carries the topic's category, down
otherwise), recorded with ``Store.set_vote``, and the votes pile up day after day. Reported:
nDCG@10 of each (topic, day >= 2) edition with at least 3 relevant papers, averaged (137
editions), and the day-1 mean apart; on random halves of the topics too (``--splits``).

Methods (``--methods``):
  none       the profile text only
  votes      the votes recorded in the store (the run reads them)
  likes      the relevant picks of earlier days in the profile as a BibTeX ``liked_file``
             would give them (title and abstract), learned from as up votes
  likes-ids  the same picks as ``liked`` arXiv ids (their text read from the store)
  likes-old  ``likes`` with ``vote_model = false``: liked papers lift their nearest
             neighbours (the ranker before votes were learned from)
  oracle     votes on every paper of the earlier days, not just the ten shown (the true
             label of each; given to ``Ranker.rank_many`` directly): about the ceiling

The replay shows the top 10 of every edition, so the relevance floor is off there. With
``--floor``: the floor calibrated and checked. The replay without votes notes each pick's
cosine to the interests as the floor measures it (``_floor.floor_cosines``), and a logistic
fit of "relevant" on that cosine gives the floor: the cosine at which a pick is relevant
half as often as the average pick of the top 10 (``calibrate``); the same on random halves
of the topics, each half's floor applied to the other half. Then the replay again with the
shipped floor (``[ranking] relevance_floor``), with and without votes: the share of the
papers sent that are relevant, how many are sent per edition, and nDCG@10.

Run: .venv/bin/python bench/feedback_eval.py [--splits 5] [--floor] [--methods none,votes]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

from digest.config import Ranking  # noqa: E402
from digest.models import Paper, Profile, Scored  # noqa: E402
from digest.ranking import CATEGORY_ALIASES, Picker, Ranker  # noqa: E402
from digest.ranking._floor import floor_cosines  # noqa: E402
from digest.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "eval"
BROAD = {"cs.AI", "cs.LG"}
MIN_PAPERS = 15
MIN_WORDS = 8
SHOWN = 10
MIN_RELEVANT = 3
METHODS = ("none", "votes", "likes", "likes-ids", "likes-old", "oracle")
BANDS = (0.45, 0.48, 0.51, 0.54, 0.57, 0.6, 0.65)  # cosine bands shown in the floor's table
HALF_AS_OFTEN = 0.5  # the floor: where a pick is relevant half as often as the average one


def load(path: Path) -> list[tuple[Paper, str]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            paper = Paper(
                id=rec["id"],
                title=rec["title"],
                abstract=rec["abstract"],
                categories=tuple(rec["categories"]),
            )
            out.append((paper, rec["day"]))
    return out


def relevant(paper: Paper, code: str) -> bool:
    want = CATEGORY_ALIASES.get(code, code)
    return any(CATEGORY_ALIASES.get(c, c) == want for c in paper.categories)


def topics_of(papers: Sequence[Paper], taxonomy: dict[str, Any]) -> list[str]:
    counts = Counter(c for p in papers for c in set(p.categories))
    return [
        c
        for c, n in sorted(counts.items())
        if n >= MIN_PAPERS
        and c not in BROAD
        and c in taxonomy
        and len(taxonomy[c]["description"].split()) >= MIN_WORDS
    ]


def profile_for(code: str, taxonomy: dict[str, Any], **kw: Any) -> Profile:
    entry = taxonomy[code]
    return Profile(
        email=f"{code.replace('.', '-')}@eval.invalid",
        interests=f"{entry['name']}. {entry['description']}",
        max_papers=SHOWN,
        **kw,
    )


def ndcg_at(ranked: Sequence[bool], n_relevant: int, k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, rel in enumerate(ranked[:k]) if rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return dcg / ideal if ideal else 0.0


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def halves(codes: Sequence[str], seeds: Sequence[int]) -> list[tuple[list[str], list[str]]]:
    """Random halves of the topics, one split per seed (the same as rank_quality.py's)."""
    out = []
    for seed in seeds:
        shuffled = list(codes)
        random.Random(seed).shuffle(shuffled)
        half = len(shuffled) // 2
        out.append((sorted(shuffled[:half]), sorted(shuffled[half:])))
    return out


# ---- the replay ----------------------------------------------------------------------------

Result = dict[tuple[str, int], dict[str, Any]]  # (topic, day) -> ndcg, n_rel, picks


class Replay:
    """The week's five daily editions, replayed for every topic."""

    def __init__(self, rows: list[tuple[Paper, str]], taxonomy: dict[str, Any]) -> None:
        self.taxonomy = taxonomy
        self.days = sorted({d for _, d in rows})
        self.by_day = {d: [p for p, dd in rows if dd == d] for d in self.days}
        self.topics = topics_of([p for p, _ in rows], taxonomy)

    @staticmethod
    def now(day: str) -> datetime:
        return datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=7)

    def run(self, weights: Ranking, method: str, ranker: Ranker | None = None) -> Result:
        with tempfile.TemporaryDirectory(prefix="digest-replay-") as tmp:
            store = Store(f"sqlite:///{tmp}/replay.db")
            try:
                return self._run(store, ranker or Ranker(weights), method)
            finally:
                store.close()

    def _run(self, store: Store, ranker: Ranker, method: str) -> Result:
        out: Result = {}
        liked: dict[str, list[Paper]] = defaultdict(list)  # the relevant picks so far
        earlier: list[Paper] = []  # every paper of the earlier days (oracle)
        for di, day in enumerate(self.days):
            papers, now = self.by_day[day], self.now(day)
            store.upsert_papers(papers, now)
            picker = Picker(ranker, store, date.fromisoformat(day), papers, now)
            profiles = []
            for code in self.topics:
                kw: dict[str, Any] = {}
                ups = liked[code]
                if method in ("likes", "likes-old"):
                    kw["liked_texts"] = tuple((p.title, p.abstract) for p in ups)
                elif method == "likes-ids":
                    kw["liked"] = tuple(p.id for p in ups)
                profiles.append(profile_for(code, self.taxonomy, **kw))
            if method == "oracle":
                votes = {
                    p.email: [(x, 1 if relevant(x, code) else -1) for x in earlier]
                    for p, code in zip(profiles, self.topics, strict=True)
                }
                ranked: list[list[Scored]] = list(
                    ranker.rank_many(picker.corpus, profiles, votes=votes if earlier else None)
                )
            else:
                ranked = picker.pick_many(profiles)
            for code, profile, picks in zip(self.topics, profiles, ranked, strict=True):
                rel = [relevant(s.paper, code) for s in picks]
                n_rel = sum(relevant(p, code) for p in papers)
                out[(code, di)] = {
                    "ndcg": ndcg_at(rel, n_rel),
                    "n_rel": n_rel,
                    "rel": rel,
                    "ids": [s.paper.id for s in picks],
                    "now": now,
                }
                for s, r in zip(picks, rel, strict=True):
                    if method == "votes":
                        store.set_vote(profile.email, s.paper.id, 1 if r else -1, now)
                    if r:
                        liked[code].append(s.paper)
            earlier.extend(papers)
        return out


def summary(res: Result, n_days: int, topics: Sequence[str] | None = None) -> dict[str, float]:
    keep = set(topics) if topics is not None else None
    per_day: dict[int, list[float]] = defaultdict(list)
    for (code, di), r in res.items():
        if (keep is None or code in keep) and r["n_rel"] >= MIN_RELEVANT:
            per_day[di].append(r["ndcg"])
    out = {f"day{di + 1}": mean(per_day[di]) for di in range(n_days)}
    later = [x for di in range(1, n_days) for x in per_day[di]]
    out["days2-5"] = mean(later)
    out["n"] = len(later)
    return out


def sent_stats(res: Result, keep: set[str] | None = None) -> tuple[int, int, int, int]:
    """(papers sent, of them relevant, editions, editions with fewer than SHOWN)."""
    sent = rel = eds = short = 0
    for (code, _), r in res.items():
        if keep is None or code in keep:
            eds += 1
            sent += len(r["rel"])
            rel += sum(r["rel"])
            short += len(r["rel"]) < SHOWN
    return sent, rel, eds, short


def logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(y | x) = 1 / (1 + exp(-(a + b x))), by Newton's method."""
    design = np.c_[np.ones_like(x), x]
    w = np.zeros(2)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        hessian = (design * (p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hessian, design.T @ (y - p))
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def calibrate(cosine: np.ndarray, rel: np.ndarray) -> float:
    """The floor: the cosine at which a pick is relevant ``HALF_AS_OFTEN`` times as often as
    the average pick (a logistic fit of relevance on the cosine), to two decimals."""
    a, b = logistic(cosine, rel.astype(np.float64))
    target = HALF_AS_OFTEN * float(rel.mean())
    return round((math.log(target / (1 - target)) - a) / b, 2)


class Measuring(Ranker):
    """A ranker that sends every pick and notes each one's cosine as the relevance floor
    measures it: one replay tells what any floor would send (without votes, the floor
    changes nothing else)."""

    def __init__(self, weights: Ranking, notes: dict[tuple[datetime, int, str], float]) -> None:
        super().__init__(weights.model_copy(update={"relevance_floor": 1e-6}))
        self.notes = notes

    def _above_floor(
        self, corpus: Any, queries: Sequence[Any], sig: Any, picks: list[list[int]]
    ) -> list[list[int]]:
        pq, pd, cosine = floor_cosines(corpus, sig.floor_vec, sig.has_vec, picks)
        for qi, d, c in zip(pq.tolist(), pd.tolist(), cosine.tolist(), strict=True):
            self.notes[(corpus.now, qi, corpus.papers[d].id)] = c
        return picks


# ---- main ----------------------------------------------------------------------------------


def ranking_from(args: argparse.Namespace) -> Ranking:
    base = Ranking(relevance_floor=0.0)  # the protocol shows the top 10: no floor
    update: dict[str, Any] = {}
    for item in args.set or ():
        key, _, value = item.partition("=")
        kind = type(getattr(base, key))
        update[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return base.model_copy(update=update)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--papers", type=Path, default=DATA / "papers.jsonl")
    ap.add_argument("--taxonomy", type=Path, default=DATA / "taxonomy.json")
    ap.add_argument(
        "--methods", default="none,votes,likes,likes-ids,likes-old", help="comma-separated"
    )
    ap.add_argument("--set", action="append", help="a [ranking] key: name=value (repeatable)")
    ap.add_argument("--splits", type=int, default=0, help="random halves of the topics")
    ap.add_argument("--floor", action="store_true", help="calibrate and check the floor")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; use {', '.join(METHODS)}")

    rows = load(args.papers)
    taxonomy = json.loads(args.taxonomy.read_text(encoding="utf-8"))
    replay = Replay(rows, taxonomy)
    weights = ranking_from(args)
    n_days = len(replay.days)
    splits = halves(replay.topics, range(1, args.splits + 1))
    report: dict[str, Any] = {"weights": weights.model_dump()}
    print(
        f"replay: {len(rows):,} papers, {n_days} daily editions, {len(replay.topics)} topics, "
        f"the top {SHOWN} voted on ({args.papers.name}); nDCG@10"
    )
    head = "  ".join(f"day {i + 1}" for i in range(n_days))
    print(f"  {'method':<10} {head}  days 2-5 (editions)    time")
    results: dict[str, Result] = {}
    for method in methods:
        t0 = time.perf_counter()
        w = weights.model_copy(update={"vote_model": False}) if method == "likes-old" else weights
        results[method] = res = replay.run(w, method)
        s = summary(res, n_days)
        cells = "  ".join(f"{s[f'day{i + 1}']:.3f}" for i in range(n_days))
        print(
            f"  {method:<10} {cells}  {s['days2-5']:.3f}    ({s['n']})  "
            f"{time.perf_counter() - t0:6.1f} s"
        )
        report[method] = {"all": s, "halves": []}
        for a, b in splits:
            report[method]["halves"].append((summary(res, n_days, a), summary(res, n_days, b)))
    if splits:
        print("  random halves of the topics: days 2-5, and day 1 (the same for every method)")
        print(f"    {'half':<6}" + "".join(f"{m:>10}" for m in methods) + f"{'day 1':>10}")
        for k, (a, b) in enumerate(splits):
            for side, half in (("A", a), ("B", b)):
                cells = [summary(results[m], n_days, half) for m in methods]
                print(
                    f"    {f's{k + 1} {side}':<6}"
                    + "".join(f"{c['days2-5']:>10.3f}" for c in cells)
                    + f"{cells[0]['day1']:>10.3f}"
                )
    if args.floor:
        report["floor"] = floor_report(replay, weights, results, splits)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


def floor_report(
    replay: Replay,
    weights: Ranking,
    results: dict[str, Result],
    splits: Sequence[tuple[list[str], list[str]]],
) -> dict[str, Any]:
    """The relevance floor calibrated on the replay without votes, checked on halves, and
    the shipped floor replayed with and without votes."""
    notes: dict[tuple[datetime, int, str], float] = {}
    measured = replay.run(weights, "none", Measuring(weights, notes))
    index = {code: qi for qi, code in enumerate(replay.topics)}
    codes, cosine, rel = [], [], []
    for (code, _), r in measured.items():
        for pid, is_rel in zip(r["ids"], r["rel"], strict=True):
            codes.append(code)
            cosine.append(notes[(r["now"], index[code], pid)])
            rel.append(is_rel)
    c, y, where = np.asarray(cosine), np.asarray(rel, dtype=bool), np.asarray(codes)
    floor = calibrate(c, y)
    shipped = Ranking().relevance_floor
    print(
        "relevance floor: a pick's cosine to the final interests vector (after votes and "
        "feedback; the edition's centered embeddings)"
    )
    edges = (-1.0, *BANDS, 1.01)
    cells = []
    for lo, hi in itertools.pairwise(edges):
        band = (c >= lo) & (c < hi)
        name = f"< {hi:.2f}" if lo < 0 else (f">= {lo:.2f}" if hi > 1 else f"{lo:.2f}-{hi:.2f}")
        cells.append(f"{name}: {y[band].mean() if band.any() else 0:.2f} of {band.sum()}")
    print(f"  the top {SHOWN} without votes ({len(y)} picks, {y.mean():.3f} relevant), by cosine:")
    print("    " + ", ".join(cells))
    print(
        f"  calibrated floor: {floor:.2f} (where a pick is relevant {HALF_AS_OFTEN:g} x as "
        f"often as the average pick, {HALF_AS_OFTEN * y.mean():.3f}; logistic fit); "
        f"shipped: {shipped:.2f}"
    )
    out: dict[str, Any] = {"calibrated": floor, "shipped": shipped, "halves": []}
    if splits:
        print(
            "  on halves, each half's floor applied to the other half: share relevant "
            "without -> with it (picks left out: share relevant)"
        )
        cells = []
        for k, (a, b) in enumerate(splits):
            for name, fit_on, other in (("A->B", a, b), ("B->A", b, a)):
                on, off = np.isin(where, fit_on), np.isin(where, other)
                f = calibrate(c[on], y[on])
                kept, left = off & (c >= f), off & (c < f)
                out["halves"].append((k + 1, name, f, y[off].mean(), y[kept].mean()))
                cells.append(
                    f"s{k + 1} {name} {f:.2f}: {y[off].mean():.3f} -> {y[kept].mean():.3f}"
                    f" ({y[left].mean() if left.any() else 0:.2f} of {left.sum()})"
                )
        for k in range(0, len(cells), 2):
            print("    " + "   ".join(cells[k : k + 2]))
    print(f"  the replay with the shipped floor, {shipped:.2f} (papers sent: the top 10 above it):")
    print(
        f"    {'method':<7} {'relevant':>8} {'sent/edition':>13} {'short':>6} "
        f"{'nDCG 2-5':>9} {'day 1':>6}"
    )
    for method in ("none", "votes"):
        base = results.get(method) or replay.run(weights, method)
        res = replay.run(weights.model_copy(update={"relevance_floor": shipped}), method)
        n_days = len(replay.days)
        for label, r in (("without", base), ("with", res)):
            sent, hits, eds, short = sent_stats(r)
            s = summary(r, n_days)
            print(
                f"    {method:<7} {hits / max(sent, 1):>8.3f} {sent / max(eds, 1):>13.1f} "
                f"{short / max(eds, 1):>6.0%} {s['days2-5']:>9.3f} {s['day1']:>6.3f}"
                f"   {label} the floor"
            )
        if splits:
            halves_txt = []
            for k, (a, b) in enumerate(splits):
                for side, half in (("A", a), ("B", b)):
                    s0, h0, _, _ = sent_stats(base, set(half))
                    s1, h1, _, _ = sent_stats(res, set(half))
                    halves_txt.append(
                        f"s{k + 1}{side} {h0 / max(s0, 1):.3f}->{h1 / max(s1, 1):.3f}"
                    )
            print("      relevant on halves: " + ", ".join(halves_txt))
        out[method] = {"without": sent_stats(base), "with": sent_stats(res)}
    return out


if __name__ == "__main__":
    sys.exit(main())
