#!/usr/bin/env python3
"""Do grammar-constrained tool calls in a family's own format cost more than they did in the one
fixed Hermes form?

Servers, all up at once on loopback, each on a fresh data dir, one slot, 2 threads:
  before        the Alveare at --before (a git revision, checked out in a temporary worktree), on the
                embedded SmolLM2, whose template has no tool format: every call in the Hermes form;
  hermes        this tree on the same file (the same fallback);
  llama3-json, mistral, qwen2.5 (hermes, native), deepseek-r1
                this tree on copies of the embedded model with those families' chat templates
                (tests/templates/), so calls are written in each family's own format (`--reasoning-format none`:
                DeepSeek's prompt opens a thinking block, which the 135M model would not close).
Each repeat goes over the servers in a rotated order; on each, --requests forced calls (tool_choice
"required", no parallel calls, temperature 0, non-streamed) and as many plain answers of 32 tokens
(ignore_eos: equal work), one after another, streamed. Reported: medians of the prompt tokens, the
time per call and its completion tokens (a family's template renders the tools into a prompt of its
own length, so these differ with the prompt, not the grammar), and the time between streamed deltas
(one token's decode, sampling under the grammar included) for the calls and for the plain answers,
with calls / plain and the calls' ratio to `before`.

  .venv/bin/python benchmarks/tool_calls.py --before 11982f4 --repeats 3 --requests 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from machine import cpu_name, free_port, start

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Accra", "Hanoi", "Dakar"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
]
FAMILIES = {
    "llama3-json": "llama3.1.jinja",
    "mistral": "mistral-v0.3.jinja",
    "qwen2.5": "qwen2.5.jinja",
    "deepseek-r1": "deepseek-r1-distill.jinja",
}


def serve(tree: Path, model: str, data: str, extra: list[str]) -> tuple[subprocess.Popen, str, str]:
    """`alveare serve` of the code in `tree` on `model`, one slot and 2 threads."""
    port = free_port()
    args = ["--model", model, "--slots", "1", "--threads", "2", *extra]
    proc, key = start(port, data, args, tree=tree, env={"ALVEARE_OPTIMIZED_MODEL": "off"})
    return proc, f"http://127.0.0.1:{port}", key


def stream(http: httpx.Client, url: str, key: str, body: dict) -> tuple[float, list[float], dict]:
    """(ms to the first delta, the gaps between later deltas in ms, the usage) of one streamed request."""
    stamps: list[float] = []
    usage: dict = {}
    calls = 0
    t0 = time.perf_counter()
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                delta = choice["delta"]
                calls += sum(1 for d in delta.get("tool_calls") or [] if d.get("id"))
                if delta.get("content") or delta.get("tool_calls"):
                    stamps.append(time.perf_counter())
    if body.get("tools") and calls != 1:
        raise SystemExit(f"expected one call, got {calls}")
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
    return (stamps[0] - t0) * 1000, gaps, usage


def run(http: httpx.Client, url: str, key: str, requests: int, offset: int) -> dict[str, list[float]]:
    names = ("call_ms", "call_first", "call_tokens", "prompt_tokens", "call_gap", "plain_gap")
    got: dict[str, list[float]] = {k: [] for k in names}
    for i in range(requests):
        city = CITIES[(offset + i) % len(CITIES)]
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"What is the weather like in {city} today?"}],
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
            # DeepSeek's frame alone is ~100 tokens of SmolLM2's vocabulary (fullwidth bars written byte by byte).
            "max_tokens": 240,
            "temperature": 0,
        }
        t0 = time.perf_counter()
        first, gaps, usage = stream(http, url, key, body)
        got["call_ms"].append((time.perf_counter() - t0) * 1000)
        got["call_first"].append(first)
        got["call_tokens"].append(usage["completion_tokens"])
        got["prompt_tokens"].append(usage["prompt_tokens"])
        got["call_gap"] += gaps
        plain = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"Tell me about {city}."}],
            "max_tokens": 32,
            "temperature": 0,
            "ignore_eos": True,
        }
        got["plain_gap"] += stream(http, url, key, plain)[1]
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="11982f4", help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=6)
    args = parser.parse_args()

    from gguf_copy import copy_gguf

    from appliance.engine.engine import embedded_model_path

    work = Path(tempfile.mkdtemp(prefix="tool-calls-"))
    before = work / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True)
    servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
    try:
        embedded = embedded_model_path()
        configs = {"before": (before, embedded), "hermes": (ROOT, embedded)}
        for name, template in FAMILIES.items():
            text = (ROOT / "tests" / "templates" / template).read_text()
            configs[name] = (ROOT, str(copy_gguf(embedded, work / f"{name}.gguf", template=text)))
        for name, (tree, model) in configs.items():
            # DeepSeek's prompt opens a thinking block; kept in the text here, so the call comes at once.
            extra = [] if name == "before" else ["--reasoning-format", "none"]
            servers[name] = serve(tree, model, str(work / f"data-{name}"), extra)
        names = list(servers)
        results: dict[str, dict[str, list[float]]] = {n: {} for n in names}
        with httpx.Client(timeout=600) as http:
            for name in names:  # warm-up: each server's first call compiles its grammar and fills its caches
                run(http, servers[name][1], servers[name][2], 1, 0)
            for rep in range(args.repeats):
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    got = run(http, servers[name][1], servers[name][2], args.requests, rep * args.requests)
                    for k, v in got.items():
                        results[name].setdefault(k, []).extend(v)
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        base = med["before"]
        print(f"CPU: {cpu_name()}")
        print(
            f"{args.repeats} repeats x {args.requests} forced calls and 32-token plain answers per server, "
            f"rotated; 1 slot, 2 threads; before = {args.before}; medians"
        )
        print()
        columns = [
            "server (format)",
            "prompt tokens",
            "ms per call",
            "ms to its first delta",
            "call tokens",
            "call: ms between deltas",
            "plain: ms between tokens",
            "call / plain",
            "call's gap vs before",
        ]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for n in names:
            m = med[n]
            print(
                f"| {n} | {m['prompt_tokens']:.0f} | {m['call_ms']:.0f} | {m['call_first']:.0f} | "
                f"{m['call_tokens']:.0f} | "
                f"{m['call_gap']:.1f} | {m['plain_gap']:.1f} | {m['call_gap'] / m['plain_gap']:.2f}x | "
                f"{m['call_gap'] / base['call_gap']:.2f}x |"
            )
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
        for proc, _, _ in servers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
