"""Send throughput at newsletter scale: the real `digest run` against postfix's smtp-sink.

Generates N synthetic subscriber files (interests "<name>. <description>" from the arXiv
taxonomy in tests/data/eval, plus keywords, followed authors, categories, exclusions, liked
papers, weekly and send-hour subscribers) and stores 100 to 3,000 of the bundled real
papers (with upvotes, authors and dates) in a temporary project. smtp-sink listens on a
free loopback port on one core; the pipeline (`pipeline.run` inside `run_lock`, the code
behind `digest run`) runs in a fresh child process pinned to the other core, so its peak
RSS is its own. Printed: digests/s end to end, peak RSS, time per stage, and in the same
run (a) smtp-source sending as many messages of our average size over as many reused
connections (the ceiling) and (b) the naive per-email path on a sample (Jinja -> MJML ->
premailer -> EmailMessage -> smtplib, with the same picks, ranking not timed), and both
ratios against the targets. Each connection count asked for (default 1 and 4) is one
run of ours, on a fresh copy of the same project, and one of smtp-source with as many.

Run: .venv/bin/python bench/send_throughput.py [--subscribers 10000] [--papers 1000]
     [--connections 1,4] [--naive 200] [--profile FILE] [--py-spy FILE] [--rss-every S]
     [--keep]
Needs postfix's smtp-sink and smtp-source (Debian/Ubuntu: apt-get install postfix).
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "eval"
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
INSTALL_HINT = (
    "postfix's smtp-sink and smtp-source are needed (not found in PATH or /usr/sbin); "
    "on Debian/Ubuntu: sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
)
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


# ---------------------------------------------------------------- the synthetic project


def load_papers(count: int, now: datetime, rng: random.Random) -> list[Any]:
    from digest.models import Paper

    rows = [json.loads(line) for line in (DATA / "papers.jsonl").open(encoding="utf-8")]
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


def subscriber_toml(
    i: int, rng: random.Random, taxonomy: dict[str, Any], papers: list[Any], today: str
) -> str:
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
        paper = rng.choice(papers)
        lines.append(f"authors = [{toml_str(paper.authors[0])}]")
    if rng.random() < 0.3:
        mode = "restrict" if rng.random() < 0.15 else "boost"
        lines.append(f'categories = ["{code}"]')
        lines.append(f'category_mode = "{mode}"')
    if rng.random() < 0.1:
        other = rng.choice(codes)
        lines.append(f'exclude = ["{other}", "survey"]')
    if rng.random() < 0.05:
        liked = ", ".join(f'"{p.id}"' for p in rng.sample(papers, 2))
        lines.append(f"liked = [{liked}]")
    lines.append(f"max_papers = {rng.choice((5, 8, 10, 10, 10, 12))}")
    if rng.random() < 0.1:
        lines.append('frequency = "weekly"')
        lines.append(f'weekday = "{today}"')
    if rng.random() < 0.1:
        lines.append("send_hour = 0")
        lines.append('timezone = "UTC"')
    return "\n".join(lines) + "\n"


def make_project(
    base: Path, args: argparse.Namespace, port: int, now: datetime
) -> tuple[Path, float]:
    """Config, database (papers stored) and subscriber files; returns (config, seconds)."""
    from digest.store import Store

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    (base / "subscribers").mkdir(parents=True)
    cfg = base / "config.toml"
    cfg.write_text(
        'database = "sqlite:///digest.db"\n'
        'subscribers_dir = "subscribers"\n'
        'timezone = "UTC"\n'
        "[sender]\n"
        f'address = "{SENDER}"\n'
        'name = "Paper Digest"\n'
        'organization = "Bench Lab"\n'
        'postal_address = "1 Bench Street, Bench City"\n'
        "[smtp]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'security = "none"\n'
        f"connections = {args.connections}\n"
        f"max_per_connection = {max(args.subscribers, 1)}\n"
        "retries = 2\n"
        "retry_backoff = 0.5\n"
        "[unsubscribe]\n"
        'url = "https://digest.example.org/unsubscribe"\n'
        'mailto = "unsubscribe@example.org"\n',
        encoding="utf-8",
    )
    papers = load_papers(args.papers, now, rng)
    store = Store(f"sqlite:///{base / 'digest.db'}")
    try:
        store.upsert_papers(papers, now - timedelta(hours=1))
    finally:
        store.close()
    taxonomy = json.loads((DATA / "taxonomy.json").read_text(encoding="utf-8"))
    taxonomy = {c: e for c, e in taxonomy.items() if e.get("description")}
    today = WEEKDAYS[now.weekday()]
    folder = base / "subscribers"
    for i in range(args.subscribers):
        text = subscriber_toml(i, rng, taxonomy, papers, today)
        with open(folder / f"s{i:06d}.toml", "w", encoding="utf-8") as fh:
            fh.write(text)
    return cfg, time.perf_counter() - t0


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[int, int]:
    """(ours, the sink's): two different cores when there are two."""
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return avail[0], avail[-1]


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def start_sink(port: int, core: int) -> subprocess.Popen[bytes]:
    cmd = [SINK]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root
    cmd += [f"127.0.0.1:{port}", "1024"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: pin(core)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"smtp-sink exited at start: {err.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(100)
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"smtp-sink did not listen on 127.0.0.1:{port}")


def pipeline_child(config: str, core: int, opts: dict[str, Any], out: Any) -> None:
    """The measured process: `digest run` as the CLI does it, pinned to one core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = SECRET
    pin(core)
    import logging
    import resource

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_import = time.perf_counter()
    # The modules `digest run` imports, some of them lazily inside the run: a fixed cost
    # of the process (printed apart), like the interpreter's start.
    for name in ("digest.rank", "digest.render", "digest.sources", "mjml", "premailer"):
        importlib.import_module(name)
    from digest.config import load
    from digest.delivery import check_config
    from digest.delivery._smtp import SmtpConnection
    from digest.pipeline import run, run_lock

    cfg = load(config)
    check_config(cfg)
    imports = time.perf_counter() - t_import
    sent_bytes = [0, 0]
    send = SmtpConnection.send

    def counting_send(self: SmtpConnection, sender: str, rcpt: str, data: bytes, **kw: Any) -> Any:
        sent_bytes[0] += len(data)
        sent_bytes[1] += 1
        return send(self, sender, rcpt, data, **kw)

    SmtpConnection.send = counting_send  # type: ignore[method-assign]  # the average size
    profiler = None
    if opts["profile"]:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    import resource as _res

    u0 = _res.getrusage(_res.RUSAGE_SELF)
    c0, t0 = time.process_time(), time.perf_counter()
    if opts["rss_every"]:
        _trace_rss(opts["rss_every"], t0)
    with run_lock(cfg):
        summary = run(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    u1 = _res.getrusage(_res.RUSAGE_SELF)
    if profiler is not None:
        profiler.stop()
        Path(opts["profile"]).write_text(profiler.output_text(unicode=False, show_all=False))
    d = summary.delivery
    try:  # an older checkout, measured for comparison, has no stage timers
        from digest import timing

        timings = [(st.name, st.wall, st.cpu, st.count) for st in timing.totals()]
    except ImportError:
        timings = []
    out.send(
        {
            "wall": wall,
            "cpu": cpu,
            "user": u1.ru_utime - u0.ru_utime,
            "sys": u1.ru_stime - u0.ru_stime,
            "switches": (u1.ru_nvcsw - u0.ru_nvcsw, u1.ru_nivcsw - u0.ru_nivcsw),
            "imports": imports,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "sent": _count(d.sent),
            "failed": _count(d.failed),
            "deferred": _count(d.deferred),
            "due": summary.due,
            "candidates": summary.candidates,
            "avg_bytes": sent_bytes[0] // max(sent_bytes[1], 1),
            "stages": timings,
        }
    )
    out.close()


def _count(items: Any) -> int:
    return int(getattr(items, "total", len(items)))


def _trace_rss(every: float, t0: float) -> None:
    """Print the resident size every ``every`` seconds (and the last stage timed)."""
    import resource
    import threading

    from digest import timing

    last = [""]
    add = timing.add

    def tracking(name: str, *a: Any) -> None:
        if name not in ("smtp", "log"):
            last[0] = name
        add(name, *a)

    def trace() -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * page / 2**20
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            now = time.perf_counter() - t0
            print(f"  RSS {now:7.2f} s: {rss:4.0f} MB (peak {peak:4.0f}) {last[0]}", flush=True)
            time.sleep(every)

    timing.add = tracking  # type: ignore[assignment]
    threading.Thread(target=trace, daemon=True).start()


def run_pipeline(config: Path, core: int, opts: dict[str, Any], spy: str) -> dict[str, Any]:
    started = time.perf_counter()
    ctx = mp.get_context("spawn")  # a fresh interpreter: nothing inherited from the generator
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=pipeline_child, args=(str(config), core, opts, send))
    proc.start()
    send.close()
    spying = None
    if spy:  # every thread, sampled from outside (py-spy: pip install py-spy)
        spying = subprocess.Popen(
            [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record",
             "--pid", str(proc.pid), "--threads", "--gil", "--rate", "500", "--format", "raw",
             "--output", spy],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        result: dict[str, Any] = recv.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"the pipeline process failed (exit code {proc.exitcode})") from None
    proc.join()
    result["process"] = time.perf_counter() - started
    if spying is not None:
        spying.wait(timeout=60)
    return result


def ceiling(port: int, core: int, count: int, size: int, connections: int) -> float:
    """smtp-source: ``count`` messages of ``size`` bytes over ``connections`` reused
    connections (-d); returns messages per second."""
    cmd = [
        SOURCE, "-s", str(connections), "-m", str(count), "-l", str(size), "-d",
        "-f", SENDER, "-t", "reader@example.net", f"127.0.0.1:{port}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, preexec_fn=lambda: pin(core), stdout=subprocess.DEVNULL)
    return count / (time.perf_counter() - t0)


# ---------------------------------------------------------------- the naive path


def naive(config: Path, port: int, sample: int) -> tuple[float, int]:
    """Per email: Jinja -> MJML -> premailer -> EmailMessage -> smtplib (one reused
    connection), for ``sample`` subscribers with the picks our ranker gives them (ranking
    not timed). Returns (digests per second, average message bytes)."""
    import smtplib
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = SECRET
    from digest.config import load
    from digest.delivery import unsubscribe_url
    from digest.models import Digest
    from digest.ranking import Ranker
    from digest.rendering import Renderer
    from digest.store import Store
    from digest.subscribers import edition_for, load_profile, profile_files

    cfg = load(config)
    now = datetime.now(UTC)
    edition = edition_for(cfg, now)
    files = profile_files(cfg.subscribers_path)[:sample]
    profiles = [load_profile(f) for f in files]
    store = Store(cfg.database_url)
    try:
        papers = store.papers_seen_between(None, now)
    finally:
        store.close()
    ranker = Ranker(cfg.ranking)
    corpus = ranker.prepare(papers, now)
    digests = [
        Digest(p, edition, tuple(picks))
        for p, picks in zip(profiles, ranker.rank_many(corpus, profiles), strict=True)
    ]
    renderer = Renderer(cfg, fast=False)
    size = 0
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        t0 = time.perf_counter()
        for d in digests:
            url = unsubscribe_url(cfg, d.profile.email)
            r = renderer.render(d, unsubscribe_url=url)
            msg = EmailMessage()
            msg["From"] = f"{cfg.sender.name} <{cfg.sender.address}>"
            msg["To"] = d.profile.email
            msg["Subject"] = r.subject
            msg["Date"] = format_datetime(now)
            msg["Message-ID"] = make_msgid(domain="bench.example.org")
            msg["List-Unsubscribe"] = f"<{url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msg.set_content(r.text)
            msg.add_alternative(r.html, subtype="html")
            data = msg.as_bytes()
            size += len(data)
            smtp.sendmail(cfg.sender.address, [d.profile.email], data)
        elapsed = time.perf_counter() - t0
    return len(digests) / elapsed, size // max(len(digests), 1)


# ---------------------------------------------------------------- main


def print_stages(r: dict[str, Any]) -> None:
    sent = max(r["sent"], 1)
    if not r["stages"]:
        print("time per stage: not available (no digest.stages in this checkout)")
        return
    print("time per stage (CPU of the threads that ran it; wall overlaps across threads):")
    print(f"  {'stage':<8} {'CPU s':>7} {'ms/digest':>10} {'share':>6} {'wall s':>7}")
    for name, wall, cpu, _count in r["stages"]:
        share = cpu / r["cpu"] if r["cpu"] else 0.0
        print(f"  {name:<8} {cpu:>7.2f} {cpu / sent * 1e3:>10.3f} {share:>6.0%} {wall:>7.2f}")
    timed = sum(cpu for _, _, cpu, _ in r["stages"])
    other = r["cpu"] - timed
    print(f"  {'other':<8} {other:>7.2f} {other / sent * 1e3:>10.3f} {other / r['cpu']:>6.0%}")
    print(f"  {'total':<8} {r['cpu']:>7.2f} {r['cpu'] / sent * 1e3:>10.3f}")


def counts(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give counts like 4 or 1,4") from None
    if not out or out[0] < 1 or out[-1] > 64:
        raise argparse.ArgumentTypeError(f"{text!r}: connections go from 1 to 64")
    return out


def measure(
    args: argparse.Namespace,
    connections: int,
    now: datetime,
    ours: int,
    theirs: int,
    naive_found: dict[str, tuple[float, int]],
) -> dict[str, Any]:
    """One fresh project (same seed: same subscribers and papers), one run of ours at
    ``connections`` connections, then smtp-source with as many; the sink restarted. The
    naive path is measured in the first run only, into ``naive_found``."""
    base = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    port = free_port()
    run_args = argparse.Namespace(**{**vars(args), "connections": connections})
    try:
        config, gen_s = make_project(base, run_args, port, now)
        print(
            f"\n== {connections} SMTP connection(s): {args.subscribers:,} subscriber files, "
            f"{args.papers:,} papers ({gen_s:.1f} s to generate in {base}); pipeline on core "
            f"{ours}, smtp-sink on core {theirs}"
        )
        sink = start_sink(port, theirs)
        try:
            opts = {"profile": args.profile, "rss_every": args.rss_every}
            r = run_pipeline(config, ours, opts, args.py_spy)
            r["rate"] = r["sent"] / r["wall"] if r["wall"] else 0.0
            print(
                f"ours: {r['sent']:,} digests sent ({r['failed']} failed, {r['deferred']} "
                f"deferred) of {r['due']:,} due in {r['wall']:.2f} s: {r['rate']:,.0f} "
                f"digests/s; CPU {r['cpu']:.2f} s (user {r['user']:.2f}, system "
                f"{r['sys']:.2f}; {r['switches'][0]:,} voluntary, {r['switches'][1]:,} forced "
                f"context switches); peak RSS {r['maxrss_kb'] / 1024:.0f} MB"
            )
            print(
                f"  whole process (interpreter start, imports {r['imports']:.2f} s, the run): "
                f"{r['process']:.2f} s, {r['sent'] / r['process']:,.0f} digests/s"
            )
            print_stages(r)
            pin(ours)
            if args.naive and "naive" not in naive_found:
                naive_found["naive"] = naive(config, port, args.naive)
            size = r.get("avg_bytes") or naive_found.get("naive", (0.0, 40_000))[1]
            r["size"] = size
            r["ceiling"] = ceiling(port, ours, max(r["sent"], 1), size, connections)
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(timeout=10)
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, {ours, theirs})
        print(
            f"ceiling: smtp-source, {max(r['sent'], 1):,} messages of {size:,} bytes over "
            f"{connections} reused connection(s): {r['ceiling']:,.0f} messages/s"
        )
        return r
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000, help="synthetic subscribers")
    ap.add_argument("--papers", type=int, default=1000, help="candidate papers (100..3000)")
    ap.add_argument(
        "--connections",
        type=counts,
        default=[1, 4],
        help="SMTP connections ([smtp] connections); several, as 1,4, for one run each",
    )
    ap.add_argument("--naive", type=int, default=200, help="digests on the naive path")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", default="", help="write a pyinstrument profile of the run here")
    ap.add_argument("--py-spy", default="", help="write py-spy's raw samples (all threads) here")
    ap.add_argument("--rss-every", type=float, default=0, help="print RSS every S seconds")
    ap.add_argument("--keep", action="store_true", help="keep the generated project")
    args = ap.parse_args()
    if not 100 <= args.papers <= 3000:
        ap.error("--papers must be between 100 and 3000 (the bundled papers)")
    if not (os.path.exists(SINK) and os.path.exists(SOURCE)):
        print(f"send_throughput: {INSTALL_HINT}", file=sys.stderr)
        return 2
    naive_found: dict[str, tuple[float, int]] = {}
    now = datetime.now(UTC)
    ours, theirs = cores()
    runs = {n: measure(args, n, now, ours, theirs, naive_found) for n in args.connections}
    naive_rate = naive_found["naive"][0] if "naive" in naive_found else 0.0
    print("\n== summary")
    if naive_rate:
        print(f"naive: {args.naive} digests, {naive_rate:,.1f} digests/s (ranking not timed)")
    print(
        f"  {'connections':>11} {'digests/s':>10} {'CPU ms/digest':>14} {'peak RSS':>9} "
        f"{'ceiling/s':>10} {'ours/ceiling':>13} {'ours/naive':>11}"
    )
    for n, r in runs.items():
        per = r["cpu"] / max(r["sent"], 1) * 1e3
        vs_naive = f"{r['rate'] / naive_rate:.1f}x" if naive_rate else "-"
        print(
            f"  {n:>11} {r['rate']:>10,.0f} {per:>14.3f} {r['maxrss_kb'] / 1024:>6.0f} MB "
            f"{r['ceiling']:>10,.0f} {r['rate'] / r['ceiling']:>12.2f}x {vs_naive:>11}"
        )
    for n, r in runs.items():
        rss = r["maxrss_kb"] / 1024
        checks = [
            (">= 1,000 digests/s", r["rate"] >= 1000),
            (
                f">= 0.4x the ceiling at {n} connection(s)",
                r["rate"] >= 0.4 * r["ceiling"],
            ),
            (">= 12x naive", bool(naive_rate) and r["rate"] >= 12 * naive_rate),
            (f"peak RSS <= 300 MB (at {args.subscribers:,} subscribers)", rss <= 300),
        ]
        print(
            f"targets at {n} connection(s): "
            + "; ".join(f"{what}: {'met' if ok else 'NOT met'}" for what, ok in checks)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
