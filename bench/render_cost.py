"""What rendering and MIME building cost per digest, as `digest run` does them.

A synthetic project as bench/send_throughput.py makes it (subscriber files, the bundled
real papers), ranked once with the real ranker (not timed, the picks saved with the
project); then, in CPU time
(process_time) and starting cold as a run does: the once-per-run work (the renderer and
every paper's card, ``begin_edition``), rendering each subscriber's digest (``render``,
the pipeline's "render" stage, skeletons compiled on first use included) and building its
message (``mime``: Message-ID and ``Composer.build``, the "mime" stage). Each pass starts
from a fresh renderer and composer; the best of ``--repeat`` passes is printed. The
SHA-256 of all the messages, in order, tells whether two checkouts build the same bytes.

``--baseline REV`` measures the committed tree REV (``git archive``) and this checkout on
the same project, passes alternating, and compares their figures and message hashes.
The naive per-email path (Jinja -> MJML -> premailer every time) is timed on a sample.

Run: .venv/bin/python bench/render_cost.py [--subscribers 3000] [--papers 1000]
     [--repeat 3] [--naive 20] [--baseline REV] [--profile FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def make(base: Path, subscribers: int, papers: int, seed: int) -> Path:
    """The synthetic project (send_throughput's), with no SMTP host."""
    sys.path.insert(0, str(ROOT))
    from bench.send_throughput import SECRET, make_project

    args = argparse.Namespace(subscribers=subscribers, papers=papers, connections=1, seed=seed)
    config, _ = make_project(base, args, 2525, NOW)
    text = config.read_text(encoding="utf-8")
    start, end = text.index("[smtp]"), text.index("[unsubscribe]")
    config.write_text(text[:start] + text[end:], encoding="utf-8")
    (base / "secret").write_text(SECRET, encoding="utf-8")
    return config


def measure(config: Path, repeat: int, naive: int, profile: str) -> dict[str, Any]:
    """The figures of the checkout that ``digest`` imports from."""
    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = (config.parent / "secret").read_text()
    import digest
    from digest.config import load
    from digest.delivery import (
        Composer,
        message_id,
        signed_url,
        unsubscribe_base,
    )
    from digest.models import Digest
    from digest.rendering import Renderer
    from digest.rendering._fast import normalize_html

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
    Renderer(cfg).render_empty(profiles[0], edition)  # imports, templates read once

    clock = time.process_time
    best: dict[str, float] = {}
    digest_sha = ""
    profiler = None
    for n in range(repeat):
        if profile and n == repeat - 1:
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
                rendered = renderer.render(
                    Digest(prof, edition, tuple(chosen)), unsubscribe_url=url
                )
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
        for key, value in (("prepare", t1 - t0), ("render", render_s), ("mime", mime_s)):
            best[key] = min(best.get(key, value), value)
        digest_sha = sha.hexdigest()

    same = 0
    naive_s = 0.0
    if naive:
        slow = Renderer(cfg, fast=False)
        sample = [(p, c, signed_url(base, signing, p.email)) for p, c in work if c][:naive]
        a = clock()
        outs = [slow.render(Digest(p, edition, tuple(c)), unsubscribe_url=u) for p, c, u in sample]
        naive_s = clock() - a
        fast = Renderer(cfg)
        fast.begin_edition(papers)
        for (p, c, u), b in zip(sample, outs, strict=True):
            r = fast.render(Digest(p, edition, tuple(c)), unsubscribe_url=u)
            same += normalize_html(r.html) == normalize_html(b.html) and r.text == b.text
    return {
        "code": str(Path(digest.__file__).parent),
        "digests": len(work),
        "papers": len(papers),
        **best,
        "sha256": digest_sha,
        "naive": naive_s / max(naive, 1),
        "naive_n": min(naive, len(work)),
        "same": same,
    }


def show(label: str, r: dict[str, Any]) -> None:
    n = r["digests"]
    per = {k: r[k] / n * 1000 for k in ("render", "mime")}
    print(
        f"{label}: once per run {r['prepare']:.2f} s (renderer + {r['papers']:,} cards); "
        f"per digest: render {per['render']:.3f} ms, mime {per['mime']:.3f} ms, "
        f"together {per['render'] + per['mime']:.3f} ms CPU"
    )
    print(f"  messages sha256 {r['sha256'][:16]} ({n:,} messages, code in {r['code']})")
    if r["naive_n"]:
        print(
            f"  naive path: {r['naive'] * 1000:.2f} ms per digest; fast == naive for "
            f"{r['same']}/{r['naive_n']} digests"
        )


def child(args: argparse.Namespace, pythonpath: str) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, __file__, "--project", args.project, "--json"]
    cmd += ["--repeat", "1", "--naive", "0"]
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
            runs["old"].append(child(args, str(old_tree)))
            runs["new"].append(child(args, ""))
    finally:
        shutil.rmtree(old_tree, ignore_errors=True)
    best = {}
    for name, rs in runs.items():
        best[name] = {**rs[0], **{k: min(r[k] for r in rs) for k in ("prepare", "render", "mime")}}
        show(f"{args.baseline if name == 'old' else 'this checkout'}", best[name])
    hashes = {r["sha256"] for rs in runs.values() for r in rs}
    print(f"messages identical: {'yes' if len(hashes) == 1 else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=3000)
    ap.add_argument("--papers", type=int, default=1000, help="candidate papers (100..3000)")
    ap.add_argument("--repeat", type=int, default=3, help="passes; the best is shown")
    ap.add_argument("--naive", type=int, default=20, help="digests on the naive path")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline", default="", help="a git revision to compare with")
    ap.add_argument("--profile", default="", help="pyinstrument profile of the last pass")
    ap.add_argument("--project", default="", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    made = ""
    if not args.project:
        made = tempfile.mkdtemp(prefix="digest-render-")
        args.project = str(make(Path(made), args.subscribers, args.papers, args.seed))
    try:
        if args.baseline:
            compare(args)
            return
        r = measure(Path(args.project), args.repeat, args.naive, args.profile)
        if args.json:
            print(json.dumps(r))
        else:
            show("this checkout", r)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
