"""The benchmarks' workload: a newsletter's subscribers, each with a profile of their own.

Every subscriber's interests are two sentences taken from two different real abstracts,
their keywords three terms from real titles (``tests/data/eval/papers.jsonl``, 3,140 arXiv
papers), their limits (``max_papers``, ``min_score``) their own; a few follow authors of
the edition's papers, list categories (boost or restrict), exclude a category or a word or
liked papers; some are weekly (due today), some have a send hour (due now). No two
subscribers share their interests, so nothing a run keeps per distinct profile text
(queries, phrases, reasons lines, text lines) is reused between subscribers unless the
profiles really share it. ``--workload taxonomy`` in the scripts gives the old workload
(interests drawn from the 152 arXiv category descriptions) for comparison.

The edition's papers are real too (titles, abstracts, categories), with made-up authors,
upvotes, links and dates (the eval data has none of them).
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "eval"
SECRET = "bench-only-not-secret"
SENDER = "digest@bench.example.org"
FIRST = (
    "Ada", "Alan", "Grace", "Yann", "Fei-Fei", "Geoffrey", "Daphne", "Andrew", "Yoshua", "Ilya",
    "Jürgen", "Sébastien", "Percy", "Chelsea", "Pieter", "Zoubin", "Léa", "Mei", "Ravi", "Olu",
    "Sofia", "Kenji", "Amara", "Noor", "Tomasz", "Ingrid", "Diego", "Priya", "Hana", "Marek",
)  # fmt: skip
LAST = (
    "Lovelace", "Turing", "Hopper", "LeCun", "Li", "Hinton", "Koller", "Ng", "Bengio",
    "Sutskever", "Schmidhuber", "Bubeck", "Liang", "Finn", "Abbeel", "Ghahramani", "Dubois",
    "Chen", "Kumar", "Adeyemi", "Rossi", "Tanaka", "Okafor", "Haddad", "Nowak", "Larsen",
    "García", "Iyer", "Kim", "Novák", "Müller", "Silva", "Ivanova", "Wang", "Smith", "Cohen",
)  # fmt: skip
DOMAINS = ("example.net", "example.com", "mail.example.org", "uni.example.edu")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WORKLOADS = ("realistic", "taxonomy")

# Title words that say nothing about a topic, left out of keywords.
_STOP = frozenset(
    """about above after again against also among analysis approach based before being
    beyond between both can could data does during each efficient from further have into
    large learning lessons method methods model models more most multi network networks
    novel over paper towards toward under using very via what when where which while with
    within without your their there these those than that this through study""".split()  # noqa: SIM905
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]{3,}")


def read_rows() -> list[dict[str, Any]]:
    with (DATA / "papers.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def load_papers(
    rows: list[dict[str, Any]], count: int, now: datetime, rng: random.Random
) -> list[Any]:
    """``count`` of the real papers as an edition: made-up authors, upvotes, links, dates."""
    from digest.models import Paper

    authors = [f"{f} {last}" for f in FIRST for last in LAST]
    out = []
    for row in rng.sample(rows, min(count, len(rows))):
        pid = row["id"]
        upvotes = int(rng.paretovariate(1.2)) if rng.random() < 0.4 else None
        out.append(
            Paper(
                id=pid,
                title=row["title"],
                abstract=row["abstract"],
                authors=tuple(rng.sample(authors, rng.randint(1, 8))),
                url=f"https://arxiv.org/abs/{pid}",
                pdf_url=f"https://arxiv.org/pdf/{pid}",
                hf_url=f"https://huggingface.co/papers/{pid}" if upvotes is not None else None,
                code_url=f"https://github.com/example/{pid}" if rng.random() < 0.25 else None,
                categories=tuple(row["categories"]),
                published=now - timedelta(hours=rng.uniform(2, 96)),
                sources=("huggingface",) if upvotes is not None else ("arxiv",),
                upvotes=upvotes,
                comments=rng.randint(1, 9) if upvotes and rng.random() < 0.3 else None,
            )
        )
    return out


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def sentences(abstract: str) -> list[str]:
    """An abstract's sentences of 6 to 60 words."""
    out = [s.strip() for s in _SENTENCE.split(abstract)]
    return [s for s in out if 6 <= len(s.split()) <= 60] or [abstract[:300]]


def title_terms(title: str) -> list[str]:
    """Candidate keywords from a title: its content words, and a two-word phrase."""
    words = [w for w in _WORD.findall(title) if w.lower() not in _STOP]
    terms = [w if w.isupper() else w.lower() for w in words]
    if len(words) >= 2:
        i = len(words) // 2
        terms.append(f'"{words[i - 1].lower()} {words[i].lower()}"')
    return terms


class Realistic:
    """Subscriber files as people write them, each profile its own."""

    def __init__(self, rows: list[dict[str, Any]], papers: list[Any], today: str) -> None:
        self.rows = rows
        self.papers = papers
        self.today = today

    def interests(self, rng: random.Random) -> tuple[str, list[str]]:
        a, b = rng.sample(self.rows, 2)
        text = " ".join(rng.choice(sentences(r["abstract"])) for r in (a, b))
        return text, list(a["categories"])

    def keywords(self, rng: random.Random) -> list[str]:
        terms: list[str] = []
        while len(terms) < 3:
            for term in title_terms(rng.choice(self.rows)["title"]):
                if term not in terms and rng.random() < 0.5:
                    terms.append(term)
                    break
        out = [toml_str(t) for t in terms]
        if rng.random() < 0.25:
            out[0] = f"{{ term = {out[0]}, weight = {rng.choice((1.5, 2.0, 3.0))} }}"
        return out

    def toml(self, i: int, rng: random.Random) -> str:
        interests, cats = self.interests(rng)
        lines = [f'email = "reader{i:06d}@{DOMAINS[i % len(DOMAINS)]}"']
        if rng.random() < 0.9:
            lines.append(f"name = {toml_str(f'{rng.choice(FIRST)} {rng.choice(LAST)}')}")
        lines.append(f"interests = {toml_str(interests)}")
        lines.append(f"keywords = [{', '.join(self.keywords(rng))}]")
        if rng.random() < 0.08:  # follows one or two authors of today's papers
            names = {rng.choice(rng.choice(self.papers).authors) for _ in range(rng.randint(1, 2))}
            lines.append(f"authors = [{', '.join(toml_str(n) for n in sorted(names))}]")
        if rng.random() < 0.15:
            mode = "restrict" if rng.random() < 0.2 else "boost"
            chosen = cats[: rng.randint(1, 2)]
            lines.append(f"categories = [{', '.join(toml_str(c) for c in chosen)}]")
            lines.append(f'category_mode = "{mode}"')
        if rng.random() < 0.08:
            other = rng.choice(rng.choice(self.rows)["categories"])
            word = rng.choice(("survey", "benchmark", "diffusion", "quantum", "medical"))
            lines.append(f"exclude = [{toml_str(other)}, {toml_str(word)}]")
        if rng.random() < 0.05:
            liked = rng.sample(self.papers, rng.randint(1, 3))
            lines.append(f"liked = [{', '.join(toml_str(p.id) for p in liked)}]")
        lines.append(f"max_papers = {rng.randint(3, 15)}")
        lines.append(f"min_score = {rng.choice((0.0, 0.0, 0.0, 0.25, 0.5, 1.0))}")
        if rng.random() < 0.12:
            lines.append('frequency = "weekly"')
            lines.append(f'weekday = "{self.today}"')
        if rng.random() < 0.1:
            lines.append('send_hour = 0\ntimezone = "UTC"')  # due now, on today's edition
        return "\n".join(lines) + "\n"


class Taxonomy:
    """The old workload: interests "<name>. <description>" of one of 152 arXiv categories."""

    def __init__(self, papers: list[Any], today: str) -> None:
        taxonomy = json.loads((DATA / "taxonomy.json").read_text(encoding="utf-8"))
        self.taxonomy = {c: e for c, e in taxonomy.items() if e.get("description")}
        self.papers = papers
        self.today = today

    def toml(self, i: int, rng: random.Random) -> str:
        taxonomy, papers = self.taxonomy, self.papers
        codes = sorted(taxonomy)
        code = rng.choice(codes)
        entry = taxonomy[code]
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        lines = [
            f'email = "reader{i:06d}@{DOMAINS[i % len(DOMAINS)]}"',
            f"name = {toml_str(name)}",
            f"interests = {toml_str(entry['name'] + '. ' + entry['description'])}",
        ]
        if rng.random() < 0.6:
            words = [taxonomy[c]["name"].split()[0].lower() for c in rng.sample(codes, 2)]
            terms = [toml_str(w) for w in words]
            if rng.random() < 0.3:
                terms.append(f"{{ term = {toml_str(rng.choice(words))}, weight = 2.0 }}")
            if rng.random() < 0.3:
                terms.append(toml_str('"' + " ".join(entry["name"].lower().split()[:2]) + '"'))
            lines.append(f"keywords = [{', '.join(terms)}]")
        if rng.random() < 0.2:
            lines.append(f"authors = [{toml_str(rng.choice(papers).authors[0])}]")
        if rng.random() < 0.3:
            mode = "restrict" if rng.random() < 0.15 else "boost"
            lines.append(f'categories = ["{code}"]')
            lines.append(f'category_mode = "{mode}"')
        if rng.random() < 0.1:
            lines.append(f'exclude = ["{rng.choice(codes)}", "survey"]')
        if rng.random() < 0.05:
            liked = ", ".join(f'"{p.id}"' for p in rng.sample(papers, 2))
            lines.append(f"liked = [{liked}]")
        lines.append(f"max_papers = {rng.choice((5, 8, 10, 10, 10, 12))}")
        if rng.random() < 0.1:
            lines.append(f'frequency = "weekly"\nweekday = "{self.today}"')
        if rng.random() < 0.1:
            lines.append('send_hour = 0\ntimezone = "UTC"')
        return "\n".join(lines) + "\n"


def config_text(port: int, connections: int, subscribers: int) -> str:
    """config.toml; ``port`` 0: no SMTP host (messages would go to the outbox)."""
    smtp = (
        "[smtp]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'security = "none"\n'
        f"connections = {connections}\n"
        f"max_per_connection = {max(subscribers, 1)}\n"
        "retries = 2\n"
        "retry_backoff = 0.5\n"
        if port
        else ""
    )
    return (
        'database = "sqlite:///digest.db"\n'
        'subscribers_dir = "subscribers"\n'
        'timezone = "UTC"\n'
        "[sender]\n"
        f'address = "{SENDER}"\n'
        'name = "Paper Digest"\n'
        'organization = "Bench Lab"\n'
        'postal_address = "1 Bench Street, Bench City"\n'
        f"{smtp}"
        "[unsubscribe]\n"
        'url = "https://digest.example.org/unsubscribe"\n'
        'mailto = "unsubscribe@example.org"\n'
    )


def make_project(
    base: Path,
    *,
    subscribers: int,
    papers: int,
    seed: int,
    now: datetime,
    workload: str = "realistic",
    port: int = 0,
    connections: int = 1,
) -> tuple[Path, float]:
    """Config, database (the edition's papers stored, first seen an hour before ``now``)
    and subscriber files in ``base``; returns (the config's path, seconds taken)."""
    from digest.store import Store

    t0 = time.perf_counter()
    rng = random.Random(seed)
    (base / "subscribers").mkdir(parents=True)
    cfg = base / "config.toml"
    cfg.write_text(config_text(port, connections, subscribers), encoding="utf-8")
    rows = read_rows()
    edition = load_papers(rows, papers, now, rng)
    store = Store(f"sqlite:///{base / 'digest.db'}")
    try:
        store.upsert_papers(edition, now - timedelta(hours=1))
    finally:
        store.close()
    today = WEEKDAYS[now.weekday()]
    maker = Realistic(rows, edition, today) if workload == "realistic" else Taxonomy(edition, today)
    folder = base / "subscribers"
    for i in range(subscribers):
        with open(folder / f"s{i:06d}.toml", "w", encoding="utf-8") as fh:
            fh.write(maker.toml(i, rng))
    return cfg, time.perf_counter() - t0


def profiles(n: int, seed: int = 7, workload: str = "realistic") -> list[Any]:
    """``n`` of the workload's profiles as values (no files), for the ranking benchmark."""
    import tomllib

    from digest.models import Keyword, Profile

    rng = random.Random(seed)
    rows = read_rows()
    now = datetime(2025, 7, 5, tzinfo=UTC)
    edition = load_papers(rows, 1000, now, rng)
    maker = (
        Realistic(rows, edition, "monday")
        if workload == "realistic"
        else Taxonomy(edition, "monday")
    )
    out = []
    for i in range(n):
        spec = tomllib.loads(maker.toml(i, rng))
        keywords = tuple(
            Keyword(k["term"].strip('"'), k["weight"])
            if isinstance(k, dict)
            else Keyword(k.strip('"'))
            for k in spec.get("keywords", ())
        )
        out.append(
            Profile(
                email=spec["email"],
                name=spec.get("name", ""),
                interests=spec["interests"],
                keywords=keywords,
                authors=tuple(spec.get("authors", ())),
                categories=tuple(spec.get("categories", ())),
                category_mode=spec.get("category_mode", "boost"),
                exclude=tuple(spec.get("exclude", ())),
                liked=tuple(spec.get("liked", ())),
                max_papers=spec.get("max_papers", 10),
                min_score=spec.get("min_score", 0.0),
            )
        )
    return out
