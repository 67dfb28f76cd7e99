"""What rendering and MIME building cost per digest, as `digest run` does them, cold.

A synthetic project (bench/workload.py: subscriber files with profiles of their own, the
bundled real papers), ranked once with the real ranker (not timed; the picks saved with
the project). Then each pass is a fresh process that starts cold, as a run does: the
imports (timed apart), the once-per-edition work (the renderer and every paper's card,
``begin_edition``), rendering each subscriber's digest (``render``, the pipeline's "render"
stage, skeletons compiled and checked on first use included) and building its message
(``mime``: Message-ID and ``Composer.build``, the "mime" stage), in CPU time
(process_time). The median of ``--repeat`` passes is printed, each pass's figures too.
The SHA-256 of all the messages, in order, tells whether two checkouts build the same
bytes.

The per-email path (Jinja -> MJML -> premailer every time, the reference) renders a sample
in the first pass; its HTML, text and whole message are compared with the fast path's,
byte for byte.

``--baseline REV`` measures the committed tree REV (``git archive``) and this checkout on
the same project, passes alternating, and compares their figures and message hashes.

Run: .venv/bin/python bench/render_cost.py [--subscribers 3000] [--papers 1000]
     [--repeat 3] [--naive 20] [--workload realistic|taxonomy] [--baseline REV]
     [--profile FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
FIGURES = ("imports", "prepare", "render", "mime")


def make(base: Path, subscribers: int, papers: int, seed: int, workload: str) -> Path:
    """The synthetic project, with no SMTP host."""
    sys.path.insert(0, str(ROOT))
    from bench.workload import SECRET, make_project

    config, _ = make_project(
        base, subscribers=subscribers, papers=papers, seed=seed, now=NOW, workload=workload
    )
    (base / "secret").write_text(SECRET, encoding="utf-8")
    return config


def measure(config: Path, naive: int, profile: str) -> dict[str, Any]:
    """One cold pass of the checkout that ``digest`` imports from."""
    clock = time.process_time
    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = (config.parent / "secret").read_text()
    t_imports = clock()
    import cssutils  # noqa: F401
    import jinja2  # noqa: F401
    import mjml  # noqa: F401
    import premailer  # noqa: F401

    import digest
    from digest.config import load
    from digest.delivery import (
        Composer,
        message_id,
        signed_url,
        unsubscribe_base,
    )
    from digest.models import Digest, Rendered
    from digest.rendering import Renderer

    imports = clock() - t_imports
    cfg = load(config)
    saved = config.parent / "picks.pickle"  # ranked once, by the first checkout measured
    if saved.exists():
        with saved.open("rb") as fh:
            profiles, papers, picks = pickle.load(fh)
    else:
        from digest.ranking import Ranker
        from digest.store import Store
        from digest.subscribers import load_profiles

        profiles, _ = load_profiles(cfg.subscribers_path)
        store = Store(cfg.database_url)
        try:
            papers = store.papers_seen_between(None, NOW)
        finally:
            store.close()
        ranker = Ranker(cfg.ranking)
        picks = list(ranker.rank_many(ranker.prepare(papers, NOW), profiles))
        with saved.open("wb") as fh:  # one pickle: picks share the papers' objects
            pickle.dump((profiles, papers, picks), fh)
    edition = NOW.date()
    base = unsubscribe_base(cfg)
    if hasattr(cfg, "link_tokens"):  # links signed per purpose and list
        signing: Any = cfg.link_tokens()
    else:  # a revision from before: an HMAC of the address
        from digest.delivery import unsubscribe_secret  # type: ignore[attr-defined]

        signing = unsubscribe_secret(cfg)
    work = list(zip(profiles, picks, strict=True))

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    t0 = clock()
    renderer = Renderer(cfg)
    renderer.begin_edition(papers)
    composer = Composer(cfg)
    t1 = clock()
    render_s = mime_s = 0.0
    sha = hashlib.sha256()
    for prof, chosen in work:
        url = signed_url(base, signing, prof.email)  # as the run does, before "render"
        a = clock()
        if chosen:
            rendered = renderer.render(Digest(prof, edition, tuple(chosen)), unsubscribe_url=url)
        else:
            rendered = renderer.render_empty(prof, edition, unsubscribe_url=url)
        b = clock()
        mid = message_id(prof.email, edition, composer.domain)
        data = composer.build(prof, edition, rendered, now=NOW, mid=mid)
        c = clock()
        render_s += b - a
        mime_s += c - b
        sha.update(data)
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False, show_all=False))

    same = {"html": 0, "text": 0, "message": 0}
    naive_s = 0.0
    sample = [(p, c, signed_url(base, signing, p.email)) for p, c in work if c][:naive]
    if sample:
        slow = Renderer(cfg, fast=False)
        a = clock()
        outs = [slow.render(Digest(p, edition, tuple(c)), unsubscribe_url=u) for p, c, u in sample]
        naive_s = clock() - a
        for (p, c, u), ref in zip(sample, outs, strict=True):
            r = renderer.render(Digest(p, edition, tuple(c)), unsubscribe_url=u)
            mid = message_id(p.email, edition, composer.domain)
            plain = Rendered(subject=ref.subject, html=ref.html, text=ref.text)
            same["html"] += r.html == ref.html
            same["text"] += r.text == ref.text
            same["message"] += composer.build(p, edition, r, now=NOW, mid=mid) == composer.build(
                p, edition, plain, now=NOW, mid=mid
            )
    return {
        "code": str(Path(digest.__file__).parent),
        "digests": len(work),
        "papers": len(papers),
        "imports": imports,
        "prepare": t1 - t0,
        "render": render_s,
        "mime": mime_s,
        "sha256": sha.hexdigest(),
        "naive": naive_s / max(len(sample), 1),
        "naive_n": len(sample),
        "same": same,
    }


def show(label: str, runs: list[dict[str, Any]]) -> None:
    r = {**runs[0], **{k: statistics.median(x[k] for x in runs) for k in FIGURES}}
    n = r["digests"]
    per = {k: r[k] / n * 1000 for k in ("render", "mime")}
    print(
        f"{label}: imports {r['imports']:.2f} s; once per edition {r['prepare']:.2f} s "
        f"(renderer + {r['papers']:,} cards); per digest: render {per['render']:.3f} ms, "
        f"mime {per['mime']:.3f} ms, together {per['render'] + per['mime']:.3f} ms CPU "
        f"(median of {len(runs)} cold passes)"
    )
    for x in runs:
        print(
            f"  pass: prepare {x['prepare']:.3f} s, render {x['render'] / n * 1e3:.3f} ms, "
            f"mime {x['mime'] / n * 1e3:.3f} ms"
        )
    hashes = {x["sha256"] for x in runs}
    print(f"  messages sha256 {r['sha256'][:16]} ({n:,} messages, code in {r['code']})")
    if len(hashes) > 1:
        print("  the passes built DIFFERENT messages")
    if r["naive_n"]:
        k, s = r["naive_n"], r["same"]
        print(
            f"  per-email path: {r['naive'] * 1000:.2f} ms per digest; byte-identical to it: "
            f"HTML {s['html']}/{k}, text {s['text']}/{k}, whole message {s['message']}/{k}"
        )


def child(args: argparse.Namespace, pythonpath: str, naive: int) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, __file__, "--project", args.project, "--json", "--naive", str(naive)]
    if args.profile:
        cmd += ["--profile", args.profile]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd="/")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare(args: argparse.Namespace) -> None:
    """``--repeat`` alternating passes of REV and this checkout, each in its own process."""
    old_tree = Path(tempfile.mkdtemp(prefix="digest-rev-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "digest", "templates"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for _ in range(args.repeat):
            runs["old"].append(child(args, str(old_tree), 0))
            runs["new"].append(child(args, "", 0))
    finally:
        shutil.rmtree(old_tree, ignore_errors=True)
    for name, rs in runs.items():
        show(f"{args.baseline if name == 'old' else 'this checkout'}", rs)
    hashes = {r["sha256"] for rs in runs.values() for r in rs}
    print(f"messages identical: {'yes' if len(hashes) == 1 else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=3000)
    ap.add_argument("--papers", type=int, default=1000, help="candidate papers (100..3000)")
    ap.add_argument("--repeat", type=int, default=3, help="cold passes; the median is shown")
    ap.add_argument("--naive", type=int, default=20, help="digests on the per-email path")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workload", choices=("realistic", "taxonomy"), default="realistic")
    ap.add_argument("--baseline", default="", help="a git revision to compare with")
    ap.add_argument("--profile", default="", help="pyinstrument profile of a pass")
    ap.add_argument("--project", default="", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:  # one pass, in this (fresh) process
        print(json.dumps(measure(Path(args.project), args.naive, args.profile)))
        return
    made = tempfile.mkdtemp(prefix="digest-render-")
    try:
        args.project = str(
            make(Path(made), args.subscribers, args.papers, args.seed, args.workload)
        )
        if args.baseline:
            compare(args)
            return
        runs = [child(args, "", args.naive if k == 0 else 0) for k in range(args.repeat)]
        show("this checkout", runs)
    finally:
        shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
