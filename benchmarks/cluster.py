#!/usr/bin/env python3
"""What a shared store costs, and what three nodes behind HAProxy give, on this machine (issue 35 §6).

Servers, all on the embedded model with `--optimized-model off` (the Q4_1 file as it is), 8 slots:
- one node on SQLite (the single box);
- one node on PostgreSQL (a cluster of one: every limit decided in the database);
- three nodes on that PostgreSQL behind the shipped HAProxy configuration.

Two loads, the servers alternated in each round, medians over rounds:
- overhead: one client, tiny requests (1 generated token), one after another: the per-request cost
  of the store shows as the latency difference (target: under 2 ms at p50 on loopback);
- throughput: 8 clients x 6 requests of 16 tokens (greedy, `ignore_eos`).

PostgreSQL runs on loopback in a temp dir (tests/pg.py; `fsync=off`, as in the tests). On a 2-core
machine the three nodes share the same two cores, so they cannot serve more than one: the row shows
the balancer's and the store's cost, not scaling.

  .venv/bin/python benchmarks/cluster.py [--rounds 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' PostgreSQL and server starters

import pg  # noqa: E402
from live import LiveServer, start_server  # noqa: E402
from machine import cpu_count, cpu_name  # noqa: E402

CONFIG = HERE.parent / "packaging" / "haproxy" / "alveare.cfg"
OVERHEAD_REQUESTS = 40
CLIENTS = 8
PER_CLIENT = 6
TOKENS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(i: int, tokens: int) -> dict:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": f"Say something about bees. ({i})"}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
    }


def overhead(url: str, key: str) -> float:
    """p50 latency in ms of one-token requests sent one after another."""
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(OVERHEAD_REQUESTS):
            t0 = time.perf_counter()
            r = client.post(url + "/v1/chat/completions", json=body(i, 1), headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[5:])  # the first few warm the caches


def throughput(url: str, key: str) -> float:
    """Generated tokens per second with CLIENTS clients."""

    async def run() -> float:
        async with httpx.AsyncClient(timeout=300) as client:

            async def one_client(c: int) -> None:
                for j in range(PER_CLIENT):
                    r = await client.post(
                        url + "/v1/chat/completions",
                        json=body(c * 100 + j, TOKENS),
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    r.raise_for_status()

            t0 = time.perf_counter()
            await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))
            return CLIENTS * PER_CLIENT * TOKENS / (time.perf_counter() - t0)

    return asyncio.run(run())


def make_key(node: LiveServer) -> str:
    """A key on a Scale account, through the node's admin API (its first admin key)."""
    admin = {"Authorization": f"Bearer {node.admin_key}"}
    httpx.post(node.url + "/v1/admin/accounts", json={"name": "bench", "plan": "scale"}, headers=admin)
    return httpx.post(node.url + "/v1/admin/keys", json={"account": "bench"}, headers=admin).json()["key"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="a folder for results.json")
    args = parser.parse_args()
    haproxy = shutil.which("haproxy")
    if not haproxy:
        print("HAProxy is not installed (the haproxy package)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="alveare-cluster-bench-"))
    server = pg.start_postgres()
    procs: list[LiveServer] = []
    balancer = None
    try:
        url = server.new_database()
        flags = ("--optimized-model", "off", "--slots", "8")
        lite = start_server(work / "lite", *flags, shared_models=False)
        procs.append(lite)
        cluster = [start_server(work / f"pg{i}", "--database", url, *flags, shared_models=False) for i in range(3)]
        procs.extend(cluster)
        port = free_port()
        env = {**os.environ, "ALVEARE_LB_BIND": f"127.0.0.1:{port}"}
        env.update({f"ALVEARE_NODE{i + 1}": f"127.0.0.1:{n.port}" for i, n in enumerate(cluster)})
        balancer = subprocess.Popen([haproxy, "-db", "-f", str(CONFIG)], env=env, stdout=subprocess.DEVNULL)
        lb = f"http://127.0.0.1:{port}"
        lite_key, pg_key = make_key(lite), make_key(cluster[0])
        time.sleep(6)  # the balancer's health checks pass (rise 2 x 2 s)
        targets = {"sqlite, 1 node": (lite.url, lite_key), "postgresql, 1 node": (cluster[0].url, pg_key),
                   "postgresql, 3 nodes + haproxy": (lb, pg_key)}  # fmt: skip
        results: dict[str, dict[str, list[float]]] = {name: {"p50_ms": [], "tok_s": []} for name in targets}
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                base, key = targets[name]
                results[name]["p50_ms"].append(overhead(base, key))
                results[name]["tok_s"].append(throughput(base, key))
                print(f"round {r + 1} {name}: p50 {results[name]['p50_ms'][-1]:.1f} ms, "
                      f"{results[name]['tok_s'][-1]:.1f} tok/s", flush=True)  # fmt: skip
        base_p50 = statistics.median(results["sqlite, 1 node"]["p50_ms"])
        base_tok = statistics.median(results["sqlite, 1 node"]["tok_s"])
        print(f"\nCPU: {cpu_name()} ({cpu_count()} cores); {args.rounds} rounds, medians")
        print("| setup | one-token request p50 | vs SQLite | tokens/s, 8 clients | vs SQLite |")
        print("|---|---|---|---|---|")
        summary = {}
        for name, r in results.items():
            p50, tok = statistics.median(r["p50_ms"]), statistics.median(r["tok_s"])
            summary[name] = {"p50_ms": p50, "tok_s": tok, "rounds": r}
            print(f"| {name} | {p50:.1f} ms | {p50 - base_p50:+.1f} ms | {tok:.1f} | {tok / base_tok:.2f}x |")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            meta = {"cpu": cpu_name(), "cores": cpu_count(), "rounds": args.rounds,
                    "overhead_requests": OVERHEAD_REQUESTS, "clients": CLIENTS, "per_client": PER_CLIENT,
                    "tokens": TOKENS}  # fmt: skip
            (args.out / "results.json").write_text(json.dumps({"meta": meta, "results": summary}, indent=2))
        return 0
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(timeout=10)
        for p in procs:
            p.stop()
        server.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
