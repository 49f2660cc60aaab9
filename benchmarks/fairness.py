#!/usr/bin/env python3
"""Two tenants on one hive: a flood beside a light user, Alveare's fair scheduler against
llama-server's first-in-first-out, on the same model file and slots (issue 34's scenario).

- Account A floods: 16 clients, each streaming a 128-token request as soon as its last one ends.
- Account B sends one short request at a time (streamed, 32 tokens).
- Every answer is equal work (greedy, `ignore_eos`).

Per server, started fresh: B alone, then A alone and A beside B, alternated (--rounds). Alveare runs twice: A and B on
the same plan, then A on Scale and B on Starter (both plans' rate limits raised so that no request
is refused by them: this measures the scheduler, not the limits). llama-server has no tenants: it
runs the scenario once, with its 8 slots (`--parallel 8`, split KV: its default) and its queue.

Reported: B's TTFT and latency (p50, p95) alone and beside A, B's latency beside A over alone
(median), A's tokens/s beside B over alone. Targets (same plans): B's p95 TTFT beside A under 1 s,
B's median latency beside A at most 4x alone, A keeping at least 85% of its tokens/s.

  .venv/bin/python benchmarks/fairness.py [--model FILE.gguf] [--seconds 30] [--rounds 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comparison.servers import MODEL_NAME, Alveare, LlamaServerSplit, Server, probe_settings  # noqa: E402
from machine import cpu_count, cpu_name  # noqa: E402

A_CLIENTS = 16
A_TOKENS = 128
B_TOKENS = 32
TOPICS = ["bees", "rivers", "volcanoes", "trains", "chess", "coffee", "owls", "bridges"]


@dataclass
class Phase:
    b_ttft_s: list[float] = field(default_factory=list)
    b_latency_s: list[float] = field(default_factory=list)
    a_tokens: int = 0
    a_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def a_tok_s(self) -> float:
        return self.a_tokens / self.a_seconds if self.a_seconds else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def body(model: str, i: int, tokens: int, stream: bool) -> dict:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Write about {TOPICS[i % len(TOPICS)]}. ({i})"},
        ],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }


async def b_request(client: httpx.AsyncClient, url: str, key: str, model: str, i: int, phase: Phase) -> None:
    t0 = time.perf_counter()
    first = None
    async with client.stream(
        "POST", url, json=body(model, i, B_TOKENS, True), headers={"Authorization": f"Bearer {key}"}
    ) as r:
        if r.status_code != 200:
            await r.aread()
            phase.errors[str(r.status_code)] = phase.errors.get(str(r.status_code), 0) + 1
            return
        async for line in r.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - t0
    phase.b_ttft_s.append(first if first is not None else float("nan"))
    phase.b_latency_s.append(time.perf_counter() - t0)


async def run_phase(server: Server, keys: dict[str, str], seconds: float, a: bool, b: bool) -> Phase:
    phase = Phase()
    url = server.base_url + "/v1/chat/completions"
    model = MODEL_NAME
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def a_worker(w: int) -> None:
            # Streamed, each token counted as it comes: A's tokens/s is what arrived inside the
            # window, not whole answers finishing in it (8 at a time, in lockstep: a coarse count).
            i = w
            while not stop.is_set():
                async with client.stream(
                    "POST", url, json=body(model, i, A_TOKENS, True), headers={"Authorization": f"Bearer {keys['a']}"}
                ) as r:
                    if r.status_code != 200:
                        await r.aread()
                        phase.errors[str(r.status_code)] = phase.errors.get(str(r.status_code), 0) + 1
                        await asyncio.sleep(0.2)
                    else:
                        async for line in r.aiter_lines():
                            if line.startswith("data: {") and not stop.is_set():
                                choices = json.loads(line[6:]).get("choices") or [{}]
                                if choices[0].get("delta", {}).get("content"):
                                    phase.a_tokens += 1
                i += A_CLIENTS

        async def b_worker() -> None:
            i = 0
            while not stop.is_set():
                await b_request(client, url, keys["b"], model, i, phase)
                i += 1

        workers = [asyncio.create_task(a_worker(w)) for w in range(A_CLIENTS)] if a else []
        if a:
            await asyncio.sleep(min(10.0, seconds / 3))  # A's flood under way before anything is counted
            phase.a_tokens = 0
        t0 = time.perf_counter()
        if b:
            workers.append(asyncio.create_task(b_worker()))
        await asyncio.sleep(seconds)
        phase.a_seconds = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    return phase


def alveare_keys(server: Alveare, plans: tuple[str, str]) -> dict[str, str]:
    """Accounts a and b on the given plans (their rate limits raised out of the way); a key each."""
    h = {"Authorization": f"Bearer {server.key}"}
    base = server.base_url + "/v1/admin"
    keys = {}
    with httpx.Client(timeout=30) as c:
        for plan in set(plans):
            c.put(
                f"{base}/plans/{plan}",
                json={"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000},
                headers=h,
            ).raise_for_status()
        for name, plan in zip("ab", plans, strict=True):
            c.post(f"{base}/accounts", json={"name": name, "plan": plan}, headers=h).raise_for_status()
            keys[name] = c.post(f"{base}/keys", json={"account": name}, headers=h).raise_for_status().json()["key"]
    return keys


def merged(phases: list[Phase]) -> Phase:
    out = Phase()
    for p in phases:
        out.b_ttft_s += p.b_ttft_s
        out.b_latency_s += p.b_latency_s
        out.a_tokens += p.a_tokens
        out.a_seconds += p.a_seconds
        for k, n in p.errors.items():
            out.errors[k] = out.errors.get(k, 0) + n
    return out


def scenario(server: Server, plans: tuple[str, str] | None, seconds: float, rounds: int) -> dict:
    server.start()
    try:
        keys = alveare_keys(server, plans) if isinstance(server, Alveare) and plans else {"a": "x", "b": "x"}
        asyncio.run(run_phase(server, keys, 3, a=False, b=True))  # warm
        b_alone = asyncio.run(run_phase(server, keys, seconds / 2, a=False, b=True))
        # A alone and A beside B alternate, so that a shared machine's drift lands on both.
        a_runs, both_runs = [], []
        for _ in range(rounds):
            a_runs.append(asyncio.run(run_phase(server, keys, seconds, a=True, b=False)))
            both_runs.append(asyncio.run(run_phase(server, keys, seconds, a=True, b=True)))
    finally:
        server.stop()
    a_alone, both = merged(a_runs), merged(both_runs)
    return {
        "b_alone": asdict(b_alone),
        "a_alone": asdict(a_alone) | {"a_tok_s": a_alone.a_tok_s},
        "both": asdict(both) | {"a_tok_s": both.a_tok_s},
        "b_ttft_p50_alone": pct(b_alone.b_ttft_s, 0.5),
        "b_ttft_p95_alone": pct(b_alone.b_ttft_s, 0.95),
        "b_ttft_p50_beside": pct(both.b_ttft_s, 0.5),
        "b_ttft_p95_beside": pct(both.b_ttft_s, 0.95),
        "b_latency_p50_alone": pct(b_alone.b_latency_s, 0.5),
        "b_latency_p95_alone": pct(b_alone.b_latency_s, 0.95),
        "b_latency_p50_beside": pct(both.b_latency_s, 0.5),
        "b_latency_p95_beside": pct(both.b_latency_s, 0.95),
        "b_latency_ratio": statistics.median(both.b_latency_s) / statistics.median(b_alone.b_latency_s)
        if both.b_latency_s and b_alone.b_latency_s
        else float("nan"),
        "b_requests_beside": len(both.b_latency_s),
        "a_kept": both.a_tok_s / a_alone.a_tok_s if a_alone.a_tok_s else float("nan"),
        "a_tok_s_alone": a_alone.a_tok_s,
        "a_tok_s_beside": both.a_tok_s,
        "errors": {**a_alone.errors, **both.errors, **b_alone.errors},
    }


def table(results: dict[str, dict]) -> str:
    rows = [
        "| server | B TTFT p50 / p95 alone (s) | B TTFT p50 / p95 beside A (s) | B latency p50 alone / beside (s) "
        "| B latency x alone | B requests beside A | A tok/s alone / beside | A kept | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['b_ttft_p50_alone']:.2f} / {r['b_ttft_p95_alone']:.2f} "
            f"| {r['b_ttft_p50_beside']:.2f} / {r['b_ttft_p95_beside']:.2f} "
            f"| {r['b_latency_p50_alone']:.2f} / {r['b_latency_p50_beside']:.2f} | {r['b_latency_ratio']:.2f}x "
            f"| {r['b_requests_beside']} | {r['a_tok_s_alone']:.0f} / {r['a_tok_s_beside']:.0f} "
            f"| {r['a_kept']:.0%} | {r['errors'] or '-'} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="the GGUF both serve (default: the embedded model's file)")
    ap.add_argument("--seconds", type=float, default=30, help="each measured phase (B alone: half)")
    ap.add_argument("--rounds", type=int, default=2, help="A alone and A beside B, alternated, this many times")
    ap.add_argument("--threads", type=int, default=cpu_count())
    ap.add_argument("--no-llama-server", action="store_true")
    ap.add_argument("--llama-server", default=str(HERE / ".work/llama-build/bin/llama-server"))
    ap.add_argument("--out", help="a folder for results.json and table.md")
    args = ap.parse_args()
    if args.model is None:
        from appliance.engine.engine import embedded_model_path

        args.model = embedded_model_path()
    # alveare_timeout: the appliance's default: admission refuses what cannot start within it
    ns = probe_settings(args.threads, args.llama_server, alveare_timeout=30, start_timeout=300)
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"fairness-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    model = Path(args.model)
    runs: list[tuple[str, Server, tuple[str, str] | None]] = [
        ("alveare, A and B on starter", Alveare(ns, model, logdir), ("starter", "starter")),
        ("alveare, A on scale, B on starter", Alveare(ns, model, logdir), ("scale", "starter")),
    ]
    if not args.no_llama_server:
        runs.append(("llama-server (FIFO)", LlamaServerSplit(ns, model, logdir), None))
    results = {}
    for name, server, plans in runs:
        print(f"== {name}", flush=True)
        results[name] = scenario(server, plans, args.seconds, args.rounds)
        print(json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}, indent=1), flush=True)
    head = (
        f"CPU: {cpu_name()} ({cpu_count()} cores), threads {args.threads}; model {model.name}; 8 slots each; "
        f"A: {A_CLIENTS} clients x {A_TOKENS} tokens, B: one {B_TOKENS}-token stream at a time; "
        f"{args.seconds:g} s per phase, {args.rounds} rounds of A alone / A beside B alternated"
    )
    text = head + "\n\n" + table(results) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "table.md").write_text(text)


if __name__ == "__main__":
    main()
