"""Send throughput at newsletter scale: `digest run` against postfix's smtp-sink.

A temporary project (bench/workload.py): N subscriber files, each with a profile of its
own built from real abstracts and titles (``--workload taxonomy``: the old workload, 152
distinct interests), and 100 to 3,000 of the bundled real papers as the edition. smtp-sink
listens on a free loopback port on one core; `digest run` (the command itself, started by
bench/_run_digest.py in a fresh interpreter: start-up, imports and every cache cold) runs
pinned to the other core. The figure that counts is digests per second of the whole
process, from its start to its exit; its peak RSS is its own (wait4). Printed with it:
start-up apart from the run, CPU per stage, and in the same run, on the same cores:

* the ceiling: smtp-source sending as many messages, of our average size, over as many
  reused connections to the same sink;
* the naive per-email path on a sample, in a fresh process too (Jinja -> MJML -> premailer
  -> EmailMessage -> smtplib, with our ranker's picks; ranking not timed).

The claims are the ratios (ours / smtp-source, ours / naive): both sides run seconds apart
on the same cores, so a busy machine moves them together. Each connection count asked for
(default 1 and 4) runs ``--repeat`` times, each on a fresh copy of the same project.

Many senders (``--workers 1,2``, ``--database postgres``, ``--dkim off,on``): `digest run
--workers N` on a project whose database is SQLite or a PostgreSQL server of the benchmark's
own (durable: fsync on), nothing pinned (the workers, the sink and the server share the
cores); for each DKIM setting, digests/s at each worker count and its ratio to one worker,
peak RSS of the largest process (a worker), the database's size, and smtp-source's
ceiling at as many connections in all.

Run: .venv/bin/python bench/send_throughput.py [--subscribers 10000] [--papers 1000]
     [--connections 1,4] [--repeat 1] [--workload realistic|taxonomy] [--naive 200]
     [--profile FILE] [--py-spy FILE] [--rss-every S] [--keep]
     [--database sqlite|postgres] [--workers 1,2] [--dkim off,on] [--pg-commit flush|async]
     [--statements]
Needs postfix's smtp-sink and smtp-source (Debian/Ubuntu: apt-get install postfix), and
for --database postgres PostgreSQL's server binaries (apt-get install postgresql).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.workload import SECRET, SENDER, WORKLOADS, make_project  # noqa: E402

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
INSTALL_HINT = (
    "postfix's smtp-sink and smtp-source are needed (not found in PATH or /usr/sbin); "
    "on Debian/Ubuntu: sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
)
ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


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
    if core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def set_port(config: Path, port: int) -> None:
    text = config.read_text(encoding="utf-8")
    start = text.index("\nport = ") + 1
    end = text.index("\n", start)
    config.write_text(text[:start] + f"port = {port}" + text[end:], encoding="utf-8")


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


def run_digest(config: Path, core: int, args: argparse.Namespace) -> dict[str, Any]:
    """`digest run` in a fresh process pinned to ``core``; its figures and its own
    wall-clock time and peak RSS, measured from here."""
    out = config.parent / "bench-out.json"
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET, "DIGEST_BENCH_OUT": str(out)}
    env.update(dict.fromkeys(ONE_THREAD, "1"))
    cmd = [sys.executable, str(ROOT / "bench" / "_run_digest.py"), str(config)]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.rss_every:
        cmd += ["--rss-every", str(args.rss_every)]
    log = (config.parent / "run.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=config.parent,
        stdout=None if args.rss_every else subprocess.DEVNULL,
        stderr=log,
        preexec_fn=lambda: pin(core),
    )
    spying = None
    if args.py_spy:  # every thread, sampled from outside (py-spy: pip install py-spy)
        spying = subprocess.Popen(
            [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record",
             "--pid", str(proc.pid), "--threads", "--gil", "--rate", "500", "--format", "raw",
             "--output", args.py_spy],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if spying is not None:
        spying.wait(timeout=60)
    if not out.exists():
        tail = (config.parent / "run.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"digest run failed (exit code {proc.returncode}):\n{tail}")
    r: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    r.update(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        switches=(usage.ru_nvcsw, usage.ru_nivcsw),
        maxrss_kb=usage.ru_maxrss,
    )
    with sqlite3.connect(config.parent / "digest.db") as db:
        summary = json.loads(db.execute("select summary from run order by id desc").fetchone()[0])
    r.update(
        sent=summary["sent"],
        failed=summary["failed_total"],
        deferred=summary["deferred_total"],
        due=summary["due"],
        nothing=summary["nothing"],
        candidates=summary["candidates"],
    )
    return r


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


def naive_child(config: str, port: int, sample: int, core: int, out: Any) -> None:
    """Per email: Jinja -> MJML -> premailer -> EmailMessage -> smtplib (one reused
    connection), for ``sample`` subscribers with the picks our ranker gives them (ranking
    not timed), in a fresh process. Sends (digests per second, average message bytes)."""
    import smtplib
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    pin(core)
    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = SECRET
    from digest.config import load
    from digest.delivery import unsubscribe_url
    from digest.models import Digest
    from digest.ranking import Ranker
    from digest.rendering import Renderer
    from digest.store import Store
    from digest.subscribers import edition_for, load_profiles

    cfg = load(config)
    now = datetime.now(UTC)
    edition = edition_for(cfg, now)
    profiles = load_profiles(cfg.subscribers_path)[0][:sample]
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
        if picks
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
    out.send((len(digests) / elapsed, size // max(len(digests), 1)))
    out.close()


def naive(config: Path, port: int, sample: int, core: int) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=naive_child, args=(str(config), port, sample, core, send))
    proc.start()
    send.close()
    try:
        result: tuple[float, int] = recv.recv()
    except EOFError:
        raise SystemExit(f"the naive path's process failed ({proc.exitcode})") from None
    finally:
        proc.join()
    return result


# ---------------------------------------------------------------- main


def print_stages(r: dict[str, Any]) -> None:
    sent = max(r["sent"], 1)
    print("  CPU per stage (the threads that ran it; wall-clock overlaps across threads):")
    print(f"    {'stage':<8} {'CPU s':>7} {'ms/digest':>10} {'share':>6} {'wall s':>7}")
    for name, wall, cpu, _count in r["stages"]:
        share = cpu / r["cpu"] if r["cpu"] else 0.0
        print(f"    {name:<8} {cpu:>7.2f} {cpu / sent * 1e3:>10.3f} {share:>6.0%} {wall:>7.2f}")
    timed = sum(cpu for _, _, cpu, _ in r["stages"])
    other = r["cpu"] - timed
    print(
        f"    {'other':<8} {other:>7.2f} {other / sent * 1e3:>10.3f} {other / r['cpu']:>6.0%}"
        "   (start-up, imports, reading the config, what no stage times)"
    )
    print(f"    {'total':<8} {r['cpu']:>7.2f} {r['cpu'] / sent * 1e3:>10.3f}")


def counts(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give counts like 4 or 1,4") from None
    if not out or out[0] < 1 or out[-1] > 64:
        raise argparse.ArgumentTypeError(f"{text!r}: connections go from 1 to 64")
    return out


def measure(
    args: argparse.Namespace, project: Path, connections: int, cores_: tuple[int, int]
) -> dict[str, Any]:
    """One fresh copy of the project, one `digest run` at ``connections`` connections,
    then smtp-source with as many connections, as many messages of the same size."""
    ours, theirs = cores_
    base = Path(tempfile.mkdtemp(prefix="digest-bench-run-"))
    shutil.rmtree(base)
    shutil.copytree(project, base)
    config = base / "config.toml"
    port = free_port()
    set_port(config, port)
    text = config.read_text(encoding="utf-8").replace(
        "connections = 1\n", f"connections = {connections}\n"
    )
    config.write_text(text, encoding="utf-8")
    try:
        sink = start_sink(port, theirs)
        try:
            r = run_digest(config, ours, args)
            r["rate"] = r["sent"] / r["wall"]
            r["size"] = r["bytes"] // max(r["messages"], 1)
            r["ceiling"] = ceiling(port, ours, max(r["sent"], 1), r["size"], connections)
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(timeout=10)
        return r
    finally:
        if args.keep:
            print(f"  kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- many senders


def dkim_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def runs_sent(url: str, since: datetime) -> int:
    """Messages sent by the runs that started after ``since`` (one per worker)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT summary, started FROM run")).all()
    finally:
        engine.dispose()
    return sum(json.loads(summary)["sent"] for summary, _ in rows)


def database_size(url: str, path: Path) -> tuple[int, int]:
    """(the whole database, the delivery log: delivery + sent_paper + due_claim), bytes."""
    if url.startswith("sqlite"):
        size = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
        with sqlite3.connect(path) as db:
            try:
                log = sum(
                    db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (t,)).fetchone()[0]
                    or 0
                    for t in ("delivery", "sent_paper", "due_claim")
                )
            except sqlite3.OperationalError:
                log = 0
        return size, log
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
            log = conn.execute(
                text(
                    "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY["
                    "'delivery', 'sent_paper', 'due_claim']::regclass[]) AS c"
                )
            ).scalar()
    finally:
        engine.dispose()
    return int(size or 0), int(log or 0)


def server_cpu(pg: Any) -> float:
    """CPU seconds the PostgreSQL server has used so far: its postmaster's and its
    processes' (and theirs once ended: connections' backends), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rpartition(")")[2].split()
        except OSError:
            return []

    try:
        master = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    fields = stat(master)
    total = sum(int(x) for x in fields[11:15]) if fields else 0  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = stat(int(entry))
            if f and int(f[1]) == master:  # a child of the postmaster
                total += int(f[11]) + int(f[12])
    return total / tick


def statements(url: str, sent: int | None) -> None:
    """With ``sent`` None: forget the statements counted so far (pg_stat_statements). Else
    print what the server ran for this database: statements, commits and their time per
    digest sent, by kind (the first words of each statement), most frequent first."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if sent is None:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.execute(text("SELECT pg_stat_statements_reset()"))
                conn.execute(text("SELECT pg_stat_reset()"))
                return
            rows = conn.execute(
                text(
                    "SELECT query, calls, total_exec_time FROM pg_stat_statements s "
                    "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
                    " AND query NOT LIKE '%pg_stat%'"
                )
            ).all()
            commits = conn.execute(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
    finally:
        engine.dispose()
    per = 1 / max(sent, 1)
    total = sum(calls for _, calls, _ in rows)
    spent = sum(ms for _, _, ms in rows)
    print(
        f"  statements on the server: {total * per:.2f} a digest ({spent * per:.3f} ms of "
        f"execution), transactions {(commits or 0) * per:.2f} a digest (pg_stat_statements, "
        "pg_stat_database)"
    )
    for query, calls, ms in sorted(rows, key=lambda r: -r[1])[:12]:
        words = " ".join(query.split())[:90]
        print(f"    {calls * per:6.2f}/digest {ms / max(calls, 1):7.3f} ms  {words}")


def measure_workers(
    args: argparse.Namespace, project: Path, workers: int, dkim: bool, pg: Any, n: int
) -> dict[str, Any]:
    """One fresh copy of the project on a fresh database, `digest run --workers N`, then
    smtp-source at as many connections in all, as many messages of the same size."""
    from digest.store import Store

    base = Path(tempfile.mkdtemp(prefix="digest-bench-run-"))
    shutil.rmtree(base)
    shutil.copytree(project, base)
    config = base / "config.toml"
    port = free_port()
    set_port(config, port)
    text_ = config.read_text(encoding="utf-8")
    connections = args.connections[-1]
    text_ = text_.replace("connections = 1\n", f"connections = {connections}\n")
    url = f"sqlite:///{base / 'digest.db'}"
    if pg is not None:  # the same papers, first seen at the same time, in PostgreSQL
        url = pg.create_database(f"bench_{n}")
        src = Store(f"sqlite:///{base / 'digest.db'}")
        dst = Store(url)
        try:
            for paper in src.papers_seen_between(None, datetime.now(UTC)):
                assert paper.first_seen is not None
                dst.upsert_papers([paper], paper.first_seen)
        finally:
            src.close()
            dst.close()
        text_ = text_.replace('database = "sqlite:///digest.db"', f'database = "{url}"')
    if dkim:
        key = dkim_key(base)
        text_ = text_.replace(
            "[unsubscribe]\n",
            f'[dkim]\nselector = "bench"\ndomain = "example.org"\nprivate_key_file = "{key}"\n'
            "[unsubscribe]\n",
        )
    config.write_text(text_, encoding="utf-8")
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET}
    env.update(dict.fromkeys(ONE_THREAD, "1"))
    if pg is not None and args.statements:
        statements(url, None)
    since = datetime.now(UTC)
    cpu_before = server_cpu(pg) if pg is not None else 0.0
    try:
        sink = start_sink(port, -1)
        try:
            out = base / "bench-out.json"
            if workers > 1:
                cmd = [sys.executable, "-m", "digest", "run", "--config", str(config)]
                cmd += ["--no-fetch", "--workers", str(workers)]
            else:  # the command itself, also counting the bytes sent (the message size)
                cmd = [sys.executable, str(ROOT / "bench" / "_run_digest.py"), str(config)]
                env["DIGEST_BENCH_OUT"] = str(out)
            log = (base / "run.log").open("wb")
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, cwd=base, stdout=log, stderr=log)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            log.close()
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                tail = (base / "run.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"digest run --workers {workers} exited {code}:\n{tail}")
            sent = runs_sent(url, since)
            db_cpu = server_cpu(pg) - cpu_before if pg is not None else 0.0
            if pg is not None and args.statements:
                statements(url, sent)
            stages: list[Any] = []
            if out.exists():  # one worker: the size of the messages it sent, its stages
                figures = json.loads(out.read_text(encoding="utf-8"))
                args.message_size = figures["bytes"] // max(figures["messages"], 1)
                stages = figures["stages"]
            size = args.message_size
            ceil = ceiling(port, -1, max(sent, 1), size, connections * workers)
        finally:
            sink.send_signal(signal.SIGTERM)
            sink.wait(timeout=10)
        db_size, log_size = database_size(url, base / "digest.db")
        return {
            "workers": workers,
            "dkim": dkim,
            "sent": sent,
            "wall": wall,
            "rate": sent / wall,
            "maxrss_kb": usage.ru_maxrss,
            "cpu": usage.ru_utime + usage.ru_stime,
            "ceiling": ceil,
            "connections": connections * workers,
            "db_size": db_size,
            "log_size": log_size,
            "stages": stages,
            "db_cpu": db_cpu,
        }
    finally:
        if args.keep:
            print(f"  kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def many_senders(args: argparse.Namespace, project: Path) -> None:
    pg = None
    if args.database == "postgres":
        from tests.pgserver import PgServer

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the server is stopped below
        sync = {} if args.pg_commit == "flush" else {"synchronous_commit": "off"}
        if args.statements:
            sync["shared_preload_libraries"] = "pg_stat_statements"
        pg = PgServer(durable=True, settings=sync).start()
        print(
            f"PostgreSQL: a server of the benchmark's own on port {pg.port} (fsync on; "
            f"synchronous_commit {'on' if args.pg_commit == 'flush' else 'off'})"
        )
    try:
        n = 0
        results = []
        for dkim in args.dkim:
            for workers in args.workers:
                for k in range(args.repeat):
                    n += 1
                    print(
                        f"\n== {args.database}, {workers} worker(s), DKIM {'on' if dkim else 'off'}"
                        f", {args.connections[-1]} connection(s) each, run {k + 1} of {args.repeat}"
                    )
                    r = measure_workers(args, project, workers, dkim, pg, n)
                    results.append(r)
                    print(
                        f"  {r['sent']:,} digests in {r['wall']:.2f} s: {r['rate']:,.0f}/s; peak "
                        f"RSS of the largest process {r['maxrss_kb'] / 1024:.0f} MB; database "
                        f"{r['db_size'] / 2**20:.1f} MB (delivery log "
                        f"{r['log_size'] / 2**20:.1f} MB); smtp-source at {r['connections']} "
                        f"connection(s): {r['ceiling']:,.0f}/s"
                    )
                    if pg is not None:
                        print(
                            f"  CPU: digest run {r['cpu']:.2f} s, PostgreSQL server "
                            f"{r['db_cpu']:.2f} s ({r['db_cpu'] / max(r['sent'], 1) * 1e3:.3f} "
                            "ms a digest)"
                        )
                    if r["stages"]:
                        print(
                            "  stages, wall / CPU s (wall overlaps across threads): "
                            + ", ".join(f"{n} {w:.2f}/{c:.2f}" for n, w, c, _ in r["stages"])
                        )
        print(f"\n== summary, {args.database}, {args.subscribers:,} subscribers (median runs)")
        print(
            f"  {'DKIM':>4} {'workers':>7} {'digests/s':>10} {'vs 1':>6} {'peak RSS':>9} "
            f"{'DB MB':>7} {'log KB/1k':>9} {'ceiling/s':>10}"
        )
        for dkim in args.dkim:
            base_rate = 0.0
            for workers in args.workers:
                rs = [r for r in results if r["dkim"] == dkim and r["workers"] == workers]
                r = sorted(rs, key=lambda x: x["rate"])[len(rs) // 2]
                base_rate = base_rate or r["rate"]
                per_k = r["log_size"] / max(r["sent"], 1) * 1000 / 1024
                print(
                    f"  {'on' if dkim else 'off':>4} {workers:>7} {r['rate']:>10,.0f} "
                    f"{r['rate'] / base_rate:>5.2f}x {r['maxrss_kb'] / 1024:>6.0f} MB "
                    f"{r['db_size'] / 2**20:>7.1f} {per_k:>9.0f} {r['ceiling']:>10,.0f}"
                )
    finally:
        if pg is not None:
            pg.stop()


def show_run(r: dict[str, Any], connections: int) -> None:
    print(
        f"ours: {r['sent']:,} digests sent ({r['failed']} failed, {r['deferred']} deferred; "
        f"{r['nothing']:,} with nothing above their min_score) of {r['due']:,} due, "
        f"{r['candidates']:,} candidate papers, in {r['wall']:.2f} s from process start to "
        f"exit: {r['rate']:,.0f} digests/s; peak RSS {r['maxrss_kb'] / 1024:.0f} MB"
    )
    print(
        f"  start-up (interpreter, imports, config) {r['wall'] - r['run_wall']:.2f} s, the "
        f"run {r['run_wall']:.2f} s ({r['sent'] / r['run_wall']:,.0f} digests/s); CPU "
        f"{r['cpu']:.2f} s (user {r['user']:.2f}, system {r['sys']:.2f}; "
        f"{r['switches'][0]:,} voluntary, {r['switches'][1]:,} forced context switches)"
    )
    print_stages(r)
    print(
        f"ceiling: smtp-source, {max(r['sent'], 1):,} messages of {r['size']:,} bytes over "
        f"{connections} reused connection(s): {r['ceiling']:,.0f} messages/s; "
        f"ours / ceiling {r['rate'] / r['ceiling']:.2f}x"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=10_000, help="subscriber files")
    ap.add_argument("--papers", type=int, default=1000, help="candidate papers (100..3000)")
    ap.add_argument(
        "--connections",
        type=counts,
        default=[1, 4],
        help="SMTP connections ([smtp] connections); several, as 1,4, for one run each",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per connection count")
    ap.add_argument("--workload", choices=WORKLOADS, default="realistic")
    ap.add_argument("--naive", type=int, default=200, help="digests on the naive path (0: none)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", default="", help="write a pyinstrument profile of the run here")
    ap.add_argument("--py-spy", default="", help="write py-spy's raw samples (all threads) here")
    ap.add_argument("--rss-every", type=float, default=0, help="print RSS every S seconds")
    ap.add_argument("--keep", action="store_true", help="keep the generated project")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument(
        "--workers", type=counts, default=[1], help="`digest run --workers N`; as 1,2 for each"
    )
    ap.add_argument(
        "--dkim",
        type=lambda v: [x.strip() == "on" for x in v.split(",")],
        default=[False],
        help="DKIM signing: off, on, or off,on",
    )
    ap.add_argument(
        "--pg-commit",
        choices=("flush", "async"),
        default="flush",
        help="PostgreSQL: each commit waits for its WAL flush (flush), or not (async: "
        "synchronous_commit = off, a server crash may lose the last half second of commits)",
    )
    ap.add_argument(
        "--statements",
        action="store_true",
        help="PostgreSQL: count the statements and commits each digest costs (pg_stat_statements)",
    )
    ap.add_argument("--message-size", type=int, default=60_000, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 100 <= args.papers <= 3000:
        ap.error("--papers must be between 100 and 3000 (the bundled papers)")
    if not (os.path.exists(SINK) and os.path.exists(SOURCE)):
        print(f"send_throughput: {INSTALL_HINT}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    ours, theirs = cores()
    project = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        config, gen_s = make_project(
            project / "p",
            subscribers=args.subscribers,
            papers=args.papers,
            seed=args.seed,
            now=now,
            workload=args.workload,
            port=1,
        )
        print(
            f"project: {args.subscribers:,} subscriber files ({args.workload} workload), "
            f"{args.papers:,} papers ({gen_s:.1f} s to generate in {project}); `digest run` on "
            f"core {ours}, smtp-sink on core {theirs}; each run a fresh process on a fresh "
            "copy of the project"
        )
        if args.database != "sqlite" or args.workers != [1] or args.dkim != [False]:
            many_senders(args, config.parent)
            return 0
        runs: dict[int, list[dict[str, Any]]] = {}
        for n in args.connections:
            for k in range(args.repeat):
                print(f"\n== {n} SMTP connection(s), run {k + 1} of {args.repeat}")
                r = measure(args, config.parent, n, (ours, theirs))
                show_run(r, n)
                runs.setdefault(n, []).append(r)
        naive_rate = 0.0
        if args.naive:
            port = free_port()
            sink = start_sink(port, theirs)
            try:
                naive_rate, naive_size = naive(config, port, args.naive, ours)
            finally:
                sink.send_signal(signal.SIGTERM)
                sink.wait(timeout=10)
            print(
                f"\nnaive: {args.naive} subscribers (those with picks), {naive_rate:,.1f} "
                f"digests/s, {naive_size:,} bytes a message (a fresh process; ranking not timed)"
            )
    finally:
        if args.keep:
            print(f"kept {project}")
        else:
            shutil.rmtree(project, ignore_errors=True)
    print("\n== summary (each row the median run by digests/s)")
    print(
        f"  {'connections':>11} {'digests/s':>10} {'CPU ms/digest':>14} {'peak RSS':>9} "
        f"{'ceiling/s':>10} {'ours/ceiling':>13} {'ours/naive':>11}"
    )
    best = {}
    for n, rs in runs.items():
        r = sorted(rs, key=lambda x: x["rate"])[len(rs) // 2]
        best[n] = r
        per = r["cpu"] / max(r["sent"], 1) * 1e3
        vs_naive = f"{r['rate'] / naive_rate:.1f}x" if naive_rate else "-"
        print(
            f"  {n:>11} {r['rate']:>10,.0f} {per:>14.3f} {r['maxrss_kb'] / 1024:>6.0f} MB "
            f"{r['ceiling']:>10,.0f} {r['rate'] / r['ceiling']:>12.2f}x {vs_naive:>11}"
        )
    for n, r in best.items():
        rss = r["maxrss_kb"] / 1024
        checks = [
            (">= 1,000 digests/s", r["rate"] >= 1000),
            (f">= 0.4x the ceiling at {n} connection(s)", r["rate"] >= 0.4 * r["ceiling"]),
            (f"peak RSS <= 300 MB (at {args.subscribers:,} subscribers)", rss <= 300),
        ]
        print(
            f"targets at {n} connection(s): "
            + "; ".join(f"{what}: {'met' if ok else 'NOT met'}" for what, ok in checks)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
