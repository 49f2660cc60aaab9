#!/usr/bin/env python3
"""Soak run: a few minutes of concurrent clients at and beyond the plan limits, on loopback.

It starts its own `alveare serve` (embedded model, a fresh temporary data dir, 127.0.0.1 only,
--slots 4 --queue 4, which 11 clients overfill), creates three accounts through the admin API, and
runs client threads until --duration seconds or --max-requests requests, whichever comes first:

  at-limit   2 clients on a plan of --rpm requests/min that wait out each 429's Retry-After
             (they run at the limit, so a few 429s are expected);
  over-limit 3 clients on a plan of --rpm/2 requests/min that ignore it and retry after 0.2 s
             (most of their requests are 429s);
  flood      6 clients on the scale plan, closed loop, more than the slots and queue hold
             (503 server_overloaded when the queue is full).

Requests mix /v1/infer, chat completions and streamed chat completions with a few tokens each.
The server's resident memory (VmRSS) is sampled every 2 s. At the end it checks:

  - no status other than 200, 429 and 503 (and no connection error);
  - each account's usage counters (GET /v1/admin/usage) equal the 200s its clients got;
  - resident memory flat after warm-up (the first quarter): it grows by at most 5% and 16 MB
    from the end of warm-up to the end of the run.

It prints a Markdown summary (with the CPU model) and exits 1 if a check failed. Only the
standard library, httpx and appliance.admin.remote are used:

  .venv/bin/python benchmarks/soak.py --duration 180
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import admin_key_in, cpu_name  # noqa: E402

from appliance.admin.remote import AdminClient  # noqa: E402

HOST = "127.0.0.1"  # loopback only
MAX_DURATION_S = 900
MAX_REQUESTS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    admin_key: str
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def start_server(data_dir: Path, slots: int, queue: int) -> Server:
    port = free_port()
    env = {**os.environ, "ALVEARE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "appliance", "serve", "--host", HOST, "--port", str(port)]
    args += ["--slots", str(slots), "--queue", str(queue), "--timeout", "120"]
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Server(process, port, "")
    assert process.stdout is not None
    for line in process.stdout:
        server.log.append(line)
        server.admin_key = admin_key_in(line) or server.admin_key
        if line.startswith("Listening on"):
            break
    threading.Thread(target=lambda: server.log.extend(process.stdout or []), daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("alveare serve exited:\n" + "".join(server.log))
        try:
            if httpx.get(server.url + "/health", timeout=2).json().get("model_loaded"):
                return server
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("alveare serve did not become ready:\n" + "".join(server.log))


class Tally:
    """What the clients saw, per account: statuses, latencies of the 200s."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[str, Counter[str]] = {}
        self.latencies: list[float] = []
        self.sent = 0

    def take_ticket(self, limit: int) -> bool:
        with self.lock:
            if self.sent >= limit:
                return False
            self.sent += 1
            return True

    def add(self, account: str, status: str, latency: float) -> None:
        with self.lock:
            self.statuses.setdefault(account, Counter())[status] += 1
            if status == "200":
                self.latencies.append(latency)


def one_request(http: httpx.Client, key: str, i: int) -> tuple[str, float | None]:
    """Send one request of one of three kinds; returns (status, Retry-After seconds or None)."""
    headers = {"Authorization": f"Bearer {key}"}
    kind = i % 3
    if kind == 0:
        r = http.post("/v1/infer", headers=headers, json={"specialist": "classify", "prompt": f"Ticket {i}: refund?"})
        return str(r.status_code), _retry_after(r)
    body = {"model": "chat", "messages": [{"role": "user", "content": f"Say hello {i}."}], "max_tokens": 8}
    if kind == 1:
        r = http.post("/v1/chat/completions", headers=headers, json=body)
        return str(r.status_code), _retry_after(r)
    with http.stream("POST", "/v1/chat/completions", headers=headers, json={**body, "stream": True}) as r:
        if r.status_code != 200:
            r.read()
            return str(r.status_code), _retry_after(r)
        lines = list(r.iter_lines())
        # A stream that ends without [DONE] (or with an error event) is a failure, whatever its status.
        if "data: [DONE]" not in lines or any('"error"' in line for line in lines):
            return "stream-error", None
        return "200", None


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after-ms")
    return int(value) / 1000 if value and value.isdigit() else None


def client(
    url: str, account: str, key: str, behaviour: str, tally: Tally, stop: threading.Event, limit: int, seed: int
) -> None:
    i = seed
    with httpx.Client(base_url=url, timeout=120) as http:
        while not stop.is_set() and tally.take_ticket(limit):
            t0 = time.perf_counter()
            try:
                status, retry_after = one_request(http, key, i)
            except httpx.HTTPError as exc:
                status, retry_after = f"connection-error:{type(exc).__name__}", None
            tally.add(account, status, time.perf_counter() - t0)
            i += 1
            if status in ("429", "503"):
                if behaviour == "polite" and retry_after is not None:
                    stop.wait(retry_after)
                else:
                    stop.wait(0.2)


def sample_memory(pid: int, samples: list[tuple[float, float]], stop: threading.Event, t0: float) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - t0, rss_mb(pid)))
        stop.wait(2.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=180, help="seconds of load (at most 900)")
    ap.add_argument("--max-requests", type=int, default=6000, help="stop after this many requests (at most 20000)")
    ap.add_argument("--rpm", type=int, default=12, help="the at-limit plan's requests per minute")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = ap.parse_args()
    duration = min(args.duration, MAX_DURATION_S)
    limit = min(args.max_requests, MAX_REQUESTS)

    with tempfile.TemporaryDirectory(prefix="alveare-soak-") as tmp:
        server = start_server(Path(tmp) / "data", args.slots, args.queue)
        try:
            with AdminClient(server.url, server.admin_key, timeout=120) as admin:
                admin.set_plan("soak-at", requests_per_minute=args.rpm, tokens_per_minute=10_000_000)
                admin.set_plan("soak-over", requests_per_minute=max(1, args.rpm // 2), tokens_per_minute=10_000_000)
                groups = [("at-limit", "soak-at", "polite", 2), ("over-limit", "soak-over", "rude", 3)]
                groups.append(("flood", "scale", "rude", 6))
                clients = []
                for account, plan, behaviour, n in groups:
                    admin.create_account(account, plan)
                    key = admin.create_key(account).key
                    clients += [(account, key, behaviour)] * n

                tally = Tally()
                stop = threading.Event()
                t0 = time.monotonic()
                samples: list[tuple[float, float]] = []
                sampler = threading.Thread(target=sample_memory, args=(server.process.pid, samples, stop, t0))
                sampler.start()
                threads = [
                    threading.Thread(
                        target=client, args=(server.url, account, key, behaviour, tally, stop, limit, 1000 * n)
                    )
                    for n, (account, key, behaviour) in enumerate(clients)
                ]
                for t in threads:
                    t.start()
                while time.monotonic() - t0 < duration and tally.sent < limit:
                    time.sleep(0.5)
                stop.set()
                for t in threads:
                    t.join(timeout=150)
                sampler.join()
                elapsed = time.monotonic() - t0
                samples.append((elapsed, rss_mb(server.process.pid)))
                usage = {row.name: row for row in admin.usage().by_account}
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()

    statuses = {a: dict(c) for a, c in tally.statuses.items()}
    total = Counter()
    for c in tally.statuses.values():
        total.update(c)
    unexpected = {s: n for s, n in total.items() if s not in ("200", "429", "503")}
    usage_check = {
        a: {
            "ok_seen": statuses.get(a, {}).get("200", 0),
            "requests_counted": usage[a].requests if a in usage else 0,
            # refusals and failures are recorded too, as failed requests (not counted toward the quota)
            "failed_recorded": usage[a].failed if a in usage else 0,
        }
        for a, _, _, _ in groups
    }
    usage_ok = all(v["ok_seen"] == v["requests_counted"] for v in usage_check.values())
    warm = [mb for t, mb in samples if t >= duration / 4]
    rss_warm, rss_end = (warm[0], warm[-1]) if warm else (0.0, 0.0)
    growth = rss_end - rss_warm
    memory_ok = growth <= min(16.0, 0.05 * rss_warm)
    lat = sorted(tally.latencies)
    figures = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "duration_s": round(elapsed, 1),
        "clients": len(clients),
        "requests": sum(total.values()),
        "statuses": dict(total),
        "by_account": statuses,
        "usage_check": usage_check,
        "latency_ok_p50_s": round(statistics.median(lat), 3) if lat else None,
        "latency_ok_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
        "ok_per_s": round(total["200"] / elapsed, 2),
        "rss_mb": {
            "start": round(samples[0][1], 1),
            "after_warmup": round(rss_warm, 1),
            "end": round(rss_end, 1),
            "max": round(max(mb for _, mb in samples), 1),
            "growth_after_warmup": round(growth, 1),
        },
        "checks": {"only_200_429_503": not unexpected, "usage_equals_admitted": usage_ok, "memory_flat": memory_ok},
    }
    print(render(figures, args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(figures["checks"].values()) else 1


def render(f: dict, args: argparse.Namespace) -> str:
    rss = f["rss_mb"]
    rows = [
        f"Soak: {f['duration_s']} s, {f['clients']} clients, {f['cpu']} ({f['cores']} cores), "
        f"--slots {args.slots} --queue {args.queue}, at-limit plan {args.rpm}/min",
        "",
        "| account | 200 | 429 | 503 | other | usage: requests counted | usage: failed recorded |",
        "|---|---|---|---|---|---|---|",
    ]
    for account, seen in f["by_account"].items():
        other = sum(n for s, n in seen.items() if s not in ("200", "429", "503"))
        check = f["usage_check"][account]
        rows.append(
            f"| {account} | {seen.get('200', 0)} | {seen.get('429', 0)} | {seen.get('503', 0)} | {other} "
            f"| {check['requests_counted']} | {check['failed_recorded']} |"
        )
    rows += [
        "",
        f"requests {f['requests']}, answered {f['ok_per_s']}/s, latency of the 200s p50 {f['latency_ok_p50_s']} s "
        f"p95 {f['latency_ok_p95_s']} s",
        f"RSS MB: start {rss['start']}, after warm-up {rss['after_warmup']}, end {rss['end']}, max {rss['max']} "
        f"(growth after warm-up {rss['growth_after_warmup']})",
        "checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in f["checks"].items()),
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    if not re.fullmatch(r"127\.\d+\.\d+\.\d+", HOST):
        raise SystemExit("the soak run targets loopback only")
    raise SystemExit(main())
