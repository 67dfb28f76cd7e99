"""The vote model's knobs (``[ranking] vote_*``) over a grid, each setting replayed through
the run's code path (bench/feedback_eval.py, method ``votes``), then tuned on random halves
of the topics: the setting best on half A reported on half B, and the other way round, next
to the ranker without votes on that half. The figures of every setting can be kept
(``--save``) and reported again without replaying (``--load``).

Run: .venv/bin/python bench/tune_votes.py [--save grid.json | --load grid.json] [--splits 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feedback_eval import DATA, MIN_RELEVANT, Replay, halves, load

from digest.config import Ranking

GRID = {
    "vote_toward": [0.5, 1.0, 2.0],
    "vote_away": [0.0, 0.25, 0.5],
    "vote_weight": [0.0, 0.25, 0.5],
    "vote_ridge": [1.0, 3.0, 10.0],
    "vote_evidence": [0.0, 10.0],
}

Scores = dict[str, float]  # "topic|day" -> nDCG@10, for the editions that count


def days25(scores: Scores, keep: set[str] | None = None) -> float:
    xs = [v for k, v in scores.items() if keep is None or k.split("|")[0] in keep]
    return sum(xs) / len(xs) if xs else float("nan")


def replay_scores(replay: Replay, weights: Ranking, method: str) -> Scores:
    res = replay.run(weights, method)
    return {
        f"{code}|{di}": r["ndcg"]
        for (code, di), r in res.items()
        if di > 0 and r["n_rel"] >= MIN_RELEVANT
    }


def settings() -> list[dict[str, float]]:
    keys = list(GRID)
    out = []
    for combo in itertools.product(*GRID.values()):
        update = dict(zip(keys, combo, strict=True))
        if update["vote_weight"] == 0 and (update["vote_ridge"] != 3.0 or update["vote_evidence"]):
            continue  # without the ridge part, its knobs change nothing
        out.append(update)
    return out


def report(
    grid: list[tuple[dict[str, float], Scores]], none: Scores, topics: Sequence[str], n: int
) -> None:
    best = max(grid, key=lambda g: days25(g[1]))
    print(f"best on all topics: {best[0]} {days25(best[1]):.4f} (no votes {days25(none):.4f})")
    for k, (a, b) in enumerate(halves(topics, range(1, n + 1))):
        for name, tune, test in (
            ("tune A, test B", set(a), set(b)),
            ("tune B, test A", set(b), set(a)),
        ):
            chosen = max(grid, key=lambda g: days25(g[1], tune))
            print(
                f"split {k + 1} {name}: {chosen[0]} train {days25(chosen[1], tune):.3f} | "
                f"test {days25(chosen[1], test):.3f} vs no votes {days25(none, test):.3f}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--save", type=Path, help="keep every setting's figures in this file")
    ap.add_argument("--load", type=Path, help="report the figures kept in this file")
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args(argv)
    replay = Replay(load(DATA / "papers.jsonl"), json.loads((DATA / "taxonomy.json").read_text()))
    if args.load:
        kept: dict[str, Any] = json.loads(args.load.read_text(encoding="utf-8"))
        grid = [(g["settings"], g["scores"]) for g in kept["grid"]]
        none = kept["none"]
    else:
        base = Ranking(relevance_floor=0.0)
        none = replay_scores(replay, base, "none")
        grid = []
        for update in settings():
            t0 = time.perf_counter()
            scores = replay_scores(replay, base.model_copy(update=update), "votes")
            grid.append((update, scores))
            print(update, f"{days25(scores):.4f}", f"{time.perf_counter() - t0:.1f} s", flush=True)
        if args.save:
            out = {"none": none, "grid": [{"settings": u, "scores": s} for u, s in grid]}
            args.save.write_text(json.dumps(out), encoding="utf-8")
    report(grid, none, replay.topics, args.splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
