"""`make bench-web`: a real `digest serve` (uvicorn, one process) pinned to one core under
200 concurrent clients on the other core, on the two requests that come in bulk: the
one-click unsubscribe POST (RFC 8058, as mail providers send it) and the preferences page
(a reader opening the link in their digest). Prints requests/s, p50/p99 latency and
errors per endpoint, twice: at saturation (each client sends its next request as soon as
the last is answered: the server's capacity; latency is then the queue, about clients /
capacity) and at offered rates (``--rates``: the 200 clients together send that many
requests a second, at random moments, as traffic arrives; latency counts from the moment
a request was due, so a server falling behind shows it). Then search (`/search?q=`) on a
year of papers synthesized from the bundled real ones (`--search-papers`, 200,000 by
default): p50/p99 of sequential queries after the index is built, how long building it
took, and the server's memory then.

Targets: p99 under 50 ms with no errors under load; search p99 under 200 ms.

    .venv/bin/python bench/web_load.py [--clients 200] [--seconds 10] [--subscribers 2000]
                                       [--search-papers 200000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workload import load_papers, make_project, read_rows, sentences  # noqa: E402

SECRET = "bench-Web-k3Jx9q2LmZ0aVb7TcWd1YpR5sNe8HfUo4GiKzQ"
NOW = datetime(2025, 7, 5, 6, 0, tzinfo=UTC)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[int, int]:
    avail = sorted(os.sched_getaffinity(0))
    return avail[0], avail[-1]


def start_server(config: Path, port: int, core: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": SECRET}
    cmd = [sys.executable, "-m", "digest", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), *cmd, "-q"],
        env=env,
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("digest serve exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("digest serve did not start")


async def one_client(
    port: int, requests: list[bytes], until: float, lat: list[float], errors: list[str]
) -> None:
    """One keep-alive connection sending requests in turn until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = random.randrange(len(requests))
    try:
        while time.perf_counter() < until:
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(str(status))
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


async def paced_client(
    port: int,
    requests: list[bytes],
    rate: float,
    start: float,
    until: float,
    lat: list[float],
    errors: list[str],
) -> None:
    """One keep-alive connection sending at random moments, ``rate`` a second on average;
    each latency from the moment the request was due."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random()
    i = rng.randrange(len(requests))
    due = start + rng.expovariate(rate)
    try:
        while due < until:
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            lat.append(time.perf_counter() - due)
            if status != 200:
                errors.append(str(status))
            due += rng.expovariate(rate)
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


async def load_at(
    port: int, requests: list[bytes], clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    """``clients`` connections sending ``rate`` requests a second together."""
    lat: list[float] = []
    errors: list[str] = []
    start = time.perf_counter() + 0.5
    until = start + seconds
    await asyncio.gather(
        *(
            paced_client(port, requests, rate / clients, start, until, lat, errors)
            for _ in range(clients)
        )
    )
    lat.sort()
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99": 1000 * lat[int(len(lat) * 0.99)] if lat else 0.0,
        "errors": len(errors),
        "kinds": sorted(set(errors))[:5],
    }


async def load(
    port: int, requests: list[bytes], clients: int, seconds: float, pid: int
) -> dict[str, Any]:
    lat: list[float] = []
    errors: list[str] = []
    warm = time.perf_counter() + 1.0  # a second of warm-up, not counted
    await asyncio.gather(*(one_client(port, requests, warm, [], []) for _ in range(clients)))
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(one_client(port, requests, until, lat, errors) for _ in range(clients)))
    took = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu
    lat.sort()
    return {
        "cpu": 1000 * cpu / max(len(lat), 1),
        "requests": len(lat),
        "rps": len(lat) / took,
        "p50": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99": 1000 * lat[int(len(lat) * 0.99)] if lat else 0.0,
        "errors": len(errors),
        "kinds": sorted(set(errors))[:5],
    }


def subscriber_files(config: Path) -> list[tuple[str, str]]:
    """(address, file name) of every subscriber file."""
    out = []
    for path in sorted((config.parent / "subscribers").glob("*.toml")):
        found = re.search(r'^email = "([^"]+)"', path.read_text(encoding="utf-8"), re.M)
        if found:
            out.append((found.group(1), path.name))
    return out


def remember_files(config: Path) -> None:
    """What every `digest run` records: the file each address comes from (the pages go
    straight to it, instead of reading the folder)."""
    from digest.store import Store

    store = Store(f"sqlite:///{config.parent / 'digest.db'}")
    try:
        store.remember_subscriber_files(subscriber_files(config))
    finally:
        store.close()


def requests_for(config: Path, port: int) -> dict[str, list[bytes]]:
    os.environ["DIGEST_UNSUBSCRIBE_SECRET"] = SECRET
    from digest.config import load as load_config
    from digest.tokens import MANAGE, UNSUBSCRIBE

    tokens = load_config(config).link_tokens()
    host = f"Host: 127.0.0.1:{port}\r\n"
    body = b"List-Unsubscribe=One-Click"
    out: dict[str, list[bytes]] = {"one-click POST": [], "preferences GET": []}
    for email, _ in subscriber_files(config):
        e = quote(email, safe="@")
        unsub = f"/unsubscribe?e={e}&token={tokens.make(UNSUBSCRIBE, email)}"
        out["one-click POST"].append(
            (
                f"POST {unsub} HTTP/1.1\r\n{host}"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        prefs = f"/preferences?e={e}&token={tokens.make(MANAGE, email)}"
        out["preferences GET"].append(f"GET {prefs} HTTP/1.1\r\n{host}\r\n".encode())
    return out


def year_of_papers(config: Path, count: int, seed: int) -> float:
    """``count`` distinct papers made from the real ones, stored first seen over a year;
    seconds taken. Each is two real papers of one arXiv category spliced: the first
    half of one's title and abstract (its sentences) with the second half of the other's,
    and the first one's categories, so that every title, abstract and embedding is its
    own while the topics, the vocabulary and how papers of a field resemble each other
    stay those of real papers."""
    from dataclasses import replace

    from digest.store import Store

    t0 = time.perf_counter()
    rng = random.Random(seed)
    base = load_papers(read_rows(), 3140, NOW, rng)
    by_field: dict[str, list[Any]] = {}
    for p in base:
        by_field.setdefault(p.categories[0] if p.categories else "", []).append(p)
    store = Store(f"sqlite:///{config.parent / 'digest.db'}")
    try:
        batch = []
        for i in range(count):
            a = base[i % len(base)]
            b = rng.choice(by_field[a.categories[0] if a.categories else ""])
            ta, tb = a.title.split(), b.title.split()
            sa, sb = sentences(a.abstract), sentences(b.abstract)
            title = " ".join(ta[: max(1, len(ta) // 2)] + tb[len(tb) // 2 :])
            abstract = " ".join(sa[: max(1, len(sa) // 2)] + sb[len(sb) // 2 :])
            batch.append(replace(a, id=f"y{i:07d}", title=title, abstract=abstract))
            if len(batch) == 5000:
                store.upsert_papers(batch, NOW - timedelta(days=365 * (1 - i / count)))
                batch = []
        if batch:
            store.upsert_papers(batch, NOW)
    finally:
        store.close()
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user and system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def search(port: int, queries: list[str]) -> dict[str, float]:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
        t0 = time.perf_counter()
        first = c.get("/search", params={"q": queries[0]})  # builds the index
        build = time.perf_counter() - t0
        assert first.status_code == 200, first.status_code
        lat = []
        errors = 0
        for q in queries:
            t = time.perf_counter()
            r = c.get("/search", params={"q": q})
            lat.append(time.perf_counter() - t)
            errors += r.status_code != 200 or 'class="card"' not in r.text
    lat.sort()
    return {
        "first": build,
        "p50": 1000 * statistics.median(lat),
        "p99": 1000 * lat[int(len(lat) * 0.99)],
        "errors": errors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[50.0, 100.0, 200.0],
        help="offered requests/s of the 200 clients together (comma-separated)",
    )
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--search-papers", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    server_core, client_core = cores()
    os.sched_setaffinity(0, {client_core})
    print(f"server on core {server_core}, clients on core {client_core}")
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        base = Path(tmp)
        port = free_port()
        config, took = make_project(
            base, subscribers=args.subscribers, papers=1000, seed=args.seed, now=NOW
        )
        with config.open("a", encoding="utf-8") as fh:
            fh.write(f'[web]\nbase_url = "http://127.0.0.1:{port}"\n')
        print(f"project: {args.subscribers} subscribers, 1000 papers ({took:.1f} s)")
        remember_files(config)
        reqs = requests_for(config, port)
        proc = start_server(config, port, server_core)
        try:
            for name, batch in reqs.items():
                r = asyncio.run(load(port, batch, args.clients, args.seconds, proc.pid))
                print(
                    f"{name:16} {args.clients} clients, saturated: {r['rps']:7.0f} req/s  "
                    f"p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
                    f"errors {r['errors']} {r['kinds'] or ''}  ({r['requests']} requests; "
                    f"server CPU {r['cpu']:.2f} ms a request)"
                )
                for rate in args.rates:
                    r = asyncio.run(load_at(port, batch, args.clients, rate, args.seconds))
                    print(
                        f"{name:16} {args.clients} clients, {rate:5.0f}/s offered: "
                        f"{r['rps']:7.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms"
                        f"  errors {r['errors']} {r['kinds'] or ''}  ({r['requests']} requests)"
                    )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if args.search_papers:
            took = year_of_papers(config, args.search_papers, args.seed)
            print(f"search: {args.search_papers} papers stored ({took:.0f} s)")
            rows = read_rows()
            rng = random.Random(args.seed)
            queries = [" ".join(rng.choice(rows)["title"].split()[:6]) for _ in range(args.queries)]
            proc = start_server(config, port, server_core)
            try:
                s = search(port, queries)
                peak = peak_rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=600)
            print(
                f"search over {args.search_papers} papers: first query (builds the index) "
                f"{s['first']:.1f} s; then {args.queries} queries: p50 {s['p50']:.1f} ms  "
                f"p99 {s['p99']:.1f} ms  errors {s['errors']}; server peak RSS {peak:.0f} MB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
