"""What rendering one personalized digest costs: the edition-shared fast path beside the
naive per-email path (Jinja -> MJML -> premailer for every email), measured in the same run.

Each digest is 10 papers (HTML + text part) for a different subscriber (own name, address,
unsubscribe link, paper choice and reasons), drawn from the real arXiv papers in
tests/data/eval. The fast path's once-per-edition work (every candidate's card through
MJML + premailer, the skeleton, the one check against the naive path) is printed apart.

Run: .venv/bin/python bench/render_cost.py [--subscribers 5000] [--papers 300] [--naive 40]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

from digest.config import Config
from digest.models import Digest, Paper, Profile, Scored
from digest.render import Renderer
from digest.render_fast import normalize_html

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ROOT / "tests" / "data" / "eval" / "papers.jsonl"
EDITION = date(2025, 7, 4)
NAMES = (
    "Ada Lovelace", "Alan Turing", "Grace Hopper", "Yann LeCun", "Fei-Fei Li", "Geoffrey Hinton",
    "Daphne Koller", "Andrew Ng", "Yoshua Bengio", "Ilya Sutskever", "Jürgen Schmidhuber",
    "Sébastien Bubeck", "Percy Liang", "Chelsea Finn", "Pieter Abbeel", "Zoubin Ghahramani",
)  # fmt: skip
WORDS = ("transformers", "speech", "diffusion", "robotics", "graphs", "retrieval", "agents")


def load_papers(limit: int, rng: random.Random) -> list[Paper]:
    papers = []
    with PAPERS.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            pid = row["id"]
            authors = tuple(rng.sample(NAMES, rng.randint(1, 12)))
            papers.append(
                Paper(
                    id=pid,
                    title=row["title"],
                    abstract=row["abstract"],
                    authors=authors,
                    url=f"https://arxiv.org/abs/{pid}",
                    pdf_url=f"https://arxiv.org/pdf/{pid}",
                    hf_url=f"https://huggingface.co/papers/{pid}" if rng.random() < 0.5 else None,
                    code_url=f"https://github.com/example/{pid}" if rng.random() < 0.3 else None,
                    categories=tuple(row["categories"]),
                    published=datetime(2025, 7, 3, tzinfo=UTC),
                    upvotes=rng.randint(0, 300) if rng.random() < 0.5 else None,
                    comments=rng.randint(0, 9) if rng.random() < 0.3 else None,
                )
            )
            if len(papers) >= limit:
                break
    return papers


def make_digests(papers: list[Paper], count: int, picks: int, rng: random.Random) -> list[Digest]:
    digests = []
    for i in range(count):
        name = rng.choice(NAMES)
        profile = Profile(
            email=f"reader{i}@example.org",
            name=f"{name} {i}",
            interests=f"{rng.choice(WORDS)} and {rng.choice(WORDS)}",
        )
        chosen = rng.sample(papers, picks)
        scored = tuple(
            Scored(p, 1.0 - j / 100, (f"matches '{rng.choice(WORDS)}'", f"by {p.authors[0]}"))
            for j, p in enumerate(chosen)
        )
        digests.append(Digest(profile=profile, edition=EDITION, picks=scored))
    return digests


def unsub(i: int) -> str:
    return f"https://digest.example.org/unsubscribe?e=reader{i}%40example.org&t={i:016x}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=5000, help="digests on the fast path")
    ap.add_argument("--papers", type=int, default=300, help="candidate papers in the edition")
    ap.add_argument("--picks", type=int, default=10, help="papers per digest")
    ap.add_argument("--naive", type=int, default=40, help="digests on the naive path")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    papers = load_papers(args.papers, rng)
    digests = make_digests(papers, args.subscribers, args.picks, rng)
    cfg = Config(
        sender={
            "address": "digest@example.org",
            "name": "Paper Digest",
            "organization": "Example Lab",
            "postal_address": "1 Example Street, Example City",
        }
    )
    fast = Renderer(cfg)
    naive = Renderer(cfg, fast=False)
    naive.render(digests[0], unsubscribe_url=unsub(0))  # imports and template loading

    t0 = time.perf_counter()
    fast.begin_edition(papers)
    t1 = time.perf_counter()
    fast.render(digests[0], unsubscribe_url=unsub(0))  # skeleton + the check against naive
    t2 = time.perf_counter()
    start = time.perf_counter()
    for i, d in enumerate(digests):
        fast.render(d, unsubscribe_url=unsub(i))
    fast_s = time.perf_counter() - start
    sample_out = [fast.render(d, unsubscribe_url=unsub(i)) for i, d in enumerate(digests[:200])]
    sizes_html = [r.size for r in sample_out]
    sizes_text = [len(r.text.encode("utf-8")) for r in sample_out]

    sample = digests[: args.naive]
    start = time.perf_counter()
    naive_out = [naive.render(d, unsubscribe_url=unsub(i)) for i, d in enumerate(sample)]
    naive_s = time.perf_counter() - start

    same = sum(
        normalize_html(a.html) == normalize_html(b.html) and a.text == b.text
        for a, b in zip(
            naive_out,
            (fast.render(d, unsubscribe_url=unsub(i)) for i, d in enumerate(sample)),
            strict=True,
        )
    )
    fast_ms = fast_s / len(digests) * 1000
    naive_ms = naive_s / len(sample) * 1000
    setup_ms = 1000 * (t1 - t0)
    html_kb = statistics.mean(sizes_html) / 1000
    text_kb = statistics.mean(sizes_text) / 1000
    print(f"edition: {len(papers)} candidate papers, {args.picks} papers per digest")
    print(
        f"  once per edition: cards {setup_ms:.0f} ms ({setup_ms / len(papers):.2f} ms/paper), "
        f"skeleton + check {1000 * (t2 - t1):.0f} ms"
    )
    print(
        f"  digest size: HTML {html_kb:.1f} KB (max {max(sizes_html) / 1000:.1f} KB), "
        f"text {text_kb:.1f} KB"
    )
    print(
        f"fast path  ({len(digests)} digests): {fast_ms:.3f} ms per digest "
        f"({len(digests) / fast_s:,.0f} digests/s)"
    )
    print(
        f"naive path ({len(sample)} digests):   {naive_ms:.3f} ms per digest "
        f"({len(sample) / naive_s:,.0f} digests/s)"
    )
    print(f"speed-up: {naive_ms / fast_ms:.0f}x; fast == naive for {same}/{len(sample)} digests")
    print(f"target <= 1 ms per digest: {'met' if fast_ms <= 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
