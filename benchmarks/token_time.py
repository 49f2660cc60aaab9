#!/usr/bin/env python3
"""Where each generated token's time goes, end to end: Alveare against llama-server on the same
model file (the file Alveare serves), at one client and at eight, plain and streamed.

For every scenario each server is started fresh, warmed with two requests, driven by this script's
own HTTP clients (equal work: greedy, `ignore_eos`, --tokens each), and stopped. Servers alternate
within each repeat; the table gives medians over --repeats. Per scenario it records:

- what the clients see: tokens/s, and for streams the time between tokens after the first;
- CPU seconds per generated token of every thread of the server process (/proc/PID/task), the
  main thread (Alveare's event loop; llama-server's HTTP thread) apart from the rest;
- Alveare's own step profile (its log line at stop): ms in llama_decode and ms of host Python per
  decode-only step, by batch size; llama-server's own `timings.predicted_per_token_ms`.

  .venv/bin/python benchmarks/token_time.py --model COPY.gguf [--clients 1,8] [--repeats 3]

COPY.gguf: the file Alveare serves (`alveare model optimize` writes it into the data dir's models/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comparison.procs import stat_cpu_s  # noqa: E402
from comparison.servers import MODEL_NAME, Alveare, LlamaServerSplit, Server, log_lines, probe_settings  # noqa: E402
from machine import cpu_count, cpu_name  # noqa: E402

SYSTEM = "You are a helpful assistant."
TOPICS = ["bees", "rivers", "volcanoes", "trains", "chess", "coffee", "owls", "bridges"]
# One decode-only step of batch size N: "N: C x D + H ms" in the profile line Alveare logs at stop.
STEP_RE = re.compile(r"(\d+): (\d+) x ([\d.]+) \+ ([\d.]+) ms")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of process `pid`, by thread id."""
    return {int(task.name): stat_cpu_s(task / "stat") for task in Path(f"/proc/{pid}/task").iterdir()}


@dataclass
class Run:
    """One scenario on one server."""

    tokens: int = 0
    wall_s: float = 0.0
    gaps_ms: list[float] = field(default_factory=list)  # per streamed request: mean time between tokens
    ttft_ms: list[float] = field(default_factory=list)
    server_per_token_ms: list[float] = field(default_factory=list)  # llama-server's own timings
    cpu_main_s: float = 0.0
    cpu_other_s: float = 0.0
    steps: dict[int, tuple[int, float, float]] = field(default_factory=dict)  # Alveare: size -> (n, decode, host)

    def row(self) -> dict[str, float]:
        per_token = 1000 / (self.tokens or 1)
        out = {
            "tok_s": self.tokens / self.wall_s if self.wall_s else 0.0,
            "cpu_main_ms": self.cpu_main_s * per_token,
            "cpu_other_ms": self.cpu_other_s * per_token,
        }
        if self.gaps_ms:
            out["gap_ms"] = statistics.median(self.gaps_ms)
            out["ttft_ms"] = statistics.median(self.ttft_ms)
        if self.server_per_token_ms:
            out["server_token_ms"] = statistics.median(self.server_per_token_ms)
        if self.steps:
            size = max(self.steps, key=lambda n: self.steps[n][0])  # the batch size most steps had
            _, decode, host = self.steps[size]
            out["step_rows"] = size
            out["decode_ms_per_step"] = decode
            out["host_ms_per_step"] = host
        return out


def body(i: int, tokens: int, stream: bool) -> dict:
    return {
        "model": MODEL_NAME,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Tell me everything about {TOPICS[i % len(TOPICS)]}."},
        ],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


async def one_request(client: httpx.AsyncClient, server: Server, i: int, tokens: int, stream: bool, run: Run) -> None:
    headers = {"Authorization": f"Bearer {server.key}"} if server.key else {}
    url = server.base_url + "/v1/chat/completions"
    t0 = time.perf_counter()
    if not stream:
        r = await client.post(url, json=body(i, tokens, False), headers=headers)
        r.raise_for_status()
        data = r.json()
        run.tokens += data["usage"]["completion_tokens"]
        if timings := data.get("timings"):
            run.server_per_token_ms.append(timings["predicted_per_token_ms"])
        return
    first = last = None
    n = 0
    async with client.stream("POST", url, json=body(i, tokens, True), headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            if timings := chunk.get("timings"):
                run.server_per_token_ms.append(timings["predicted_per_token_ms"])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                last = time.perf_counter()
                first = first or last
    run.tokens += n
    if first is not None and last is not None and n > 1:
        run.ttft_ms.append(1000 * (first - t0))
        run.gaps_ms.append(1000 * (last - first) / (n - 1))


async def drive(server: Server, clients: int, requests: int, tokens: int, stream: bool, run: Run) -> None:
    queue = list(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            try:
                await one_request(client, server, i, tokens, stream, run)
            except httpx.RemoteProtocolError:  # a kept-alive connection the server had closed: once more
                await one_request(client, server, i, tokens, stream, run)

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        run.wall_s = time.perf_counter() - t0


def alveare_steps(server: Server) -> dict[int, tuple[int, float, float]]:
    """The decode-only steps of Alveare's profile line (logged at stop), by batch size."""
    for line in reversed(log_lines(server.logfile, server.log_offset)):
        if "hive profile:" in line:
            return {int(n): (int(c), float(d), float(h)) for n, c, d, h in STEP_RE.findall(line)}
    return {}


def scenario(server: Server, clients: int, requests: int, tokens: int, stream: bool) -> Run:
    run = Run()
    server.start()
    try:
        warm = Run()
        asyncio.run(drive(server, min(clients, 2), 2, 8, stream, warm))
        assert server.proc is not None
        pid = server.proc.pid
        before = thread_cpu(pid)
        asyncio.run(drive(server, clients, requests, tokens, stream, run))
        after = thread_cpu(pid)
        spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
        run.cpu_main_s = spent.get(pid, 0.0)
        run.cpu_other_s = sum(s for tid, s in spent.items() if tid != pid)
    finally:
        if server.proc is not None:  # SIGINT: Alveare logs its profile on a clean stop
            server.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):  # stop() kills what is left
                server.proc.wait(timeout=30)
        if isinstance(server, Alveare):
            run.steps = alveare_steps(server)
        server.stop()
    return run


COLUMNS = [
    ("tok_s", "tokens/s", "{:.1f}"),
    ("gap_ms", "ms between streamed tokens", "{:.2f}"),
    ("ttft_ms", "TTFT ms", "{:.0f}"),
    ("server_token_ms", "llama-server's own ms/token", "{:.2f}"),
    ("decode_ms_per_step", "llama_decode ms/step", "{:.2f}"),
    ("host_ms_per_step", "host ms/step", "{:.3f}"),
    ("cpu_main_ms", "main thread CPU ms/token", "{:.3f}"),
    ("cpu_other_ms", "other threads CPU ms/token", "{:.2f}"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the GGUF Alveare serves (its optimised copy)")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--requests", type=int, default=0, help="per scenario (default: 8 per client, at least 12)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=cpu_count())
    ap.add_argument("--modes", default="plain,stream")
    ap.add_argument(
        "--alveare",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="an Alveare variant with extra `alveare serve` flags, e.g. 'fa-on=--flash-attn on', and env:K=V "
        "words for its environment (env:PYTHONPATH=/another/checkout runs that code); repeatable; default: one, "
        "'alveare', with none",
    )
    ap.add_argument("--no-llama-server", action="store_true", help="run only the Alveare variants")
    ap.add_argument("--llama-server", default=str(HERE / ".work/llama-build/bin/llama-server"))
    ap.add_argument("--out", help="write the medians as JSON here too")
    args = ap.parse_args()
    ns = probe_settings(args.threads, args.llama_server)
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"token-time-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)

    def variant(name: str, words: list[str]) -> Server:
        flags = [w for w in words if not w.startswith("env:")]
        env = dict(w[4:].partition("=")[::2] for w in words if w.startswith("env:"))

        class Probed(Alveare):
            def build_command(self) -> list[str]:
                return [*super().build_command(), *flags]

            def extra_env(self) -> dict[str, str]:
                return env

        Probed.name = name
        return Probed(ns, Path(args.model), logdir)

    specs = [v.partition("=") for v in args.alveare] or [("alveare", "=", "")]
    servers = [variant(name, flags.split()) for name, _, flags in specs]
    if not args.no_llama_server:
        servers.append(LlamaServerSplit(ns, Path(args.model), logdir))
    results: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    for rep in range(args.repeats):
        for clients in (int(c) for c in args.clients.split(",")):
            requests = args.requests or max(12, 8 * clients)
            for mode in args.modes.split(","):
                order = servers if rep % 2 == 0 else servers[::-1]
                for server in order:
                    run = scenario(server, clients, requests, args.tokens, mode == "stream")
                    results.setdefault((server.name, clients, mode), []).append(run.row())
                    print(f"# repeat {rep + 1}: {server.name} c{clients} {mode}: {run.row()}", file=sys.stderr)
    print(f"CPU: {cpu_name()}")
    print(
        f"Model: {Path(args.model).name}; {args.tokens} tokens per request (greedy, ignore_eos); "
        f"{args.threads} threads; llama-server split KV (-c 8192 --parallel 8, its default flash attention); "
        f"alveare serve --slots 8 (variants: {'; '.join(args.alveare) or 'none'}); "
        f"medians of {args.repeats} repeats\n"
    )
    print("| server | clients | mode | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    medians = {}
    for (name, clients, mode), rows in results.items():
        med = {k: statistics.median(r[k] for r in rows if k in r) for k in rows[0]}
        medians[f"{name} c{clients} {mode}"] = med
        cells = [fmt.format(med[key]) if key in med else "-" for key, _, fmt in COLUMNS]
        print(f"| {name} | {clients} | {mode} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "cpu": cpu_name(),
                    "medians": medians,
                    "runs": {f"{n} c{c} {m}": rows for (n, c, m), rows in results.items()},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
