#!/usr/bin/env python3
"""Do grammar-constrained tool calls in a family's own format cost more than they did in the one
fixed Hermes form?

Servers, all up at once on loopback, each on a fresh data dir, one slot, 2 threads:
  before        the Alveare at --before (a git revision, checked out in a temporary worktree), on the
                embedded SmolLM2, whose template has no tool format: every call in the Hermes form;
  hermes        this tree on the same file (the same fallback);
  llama3-json, mistral, qwen2.5 (hermes, native), deepseek-r1
                this tree on copies of the embedded model with those families' chat templates
                (tests/templates/), so calls are written in each family's own format.
Each repeat goes over the servers in a rotated order; on each, --requests forced calls (tool_choice
"required", no parallel calls, temperature 0, non-streamed) and as many plain answers of 32 tokens
(ignore_eos: equal work), one after another. Reported: medians of the per-request time, the call's
completion tokens, milliseconds per completion token for the calls and for the plain answers, and
calls / plain (the grammar's share of a token's cost), with ratios to `before`.

  .venv/bin/python benchmarks/tool_calls.py --before 11982f4 --repeats 3 --requests 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from machine import cpu_name, free_port

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


def serve(tree: Path, model: str, data: str) -> tuple[subprocess.Popen, str, str]:
    """`alveare serve` of the code in `tree` (its own modules first on the path)."""
    port = free_port()
    env = {**os.environ, "ALVEARE_DATA_DIR": data, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)}
    env["ALVEARE_OPTIMIZED_MODEL"] = "off"
    args = ["--port", str(port), "--model", model, "--slots", "1", "--threads", "2", "--timeout", "300"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().startswith("alv_"):
            key = line.strip()
        if line.startswith("Listening on"):
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).json().get("model_loaded"):
                return proc, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the server of {tree} on {model} did not become ready")


def run(http: httpx.Client, url: str, key: str, requests: int, offset: int) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    got: dict[str, list[float]] = {"call_ms": [], "call_tokens": [], "call_ms_per_token": [], "plain_ms_per_token": []}
    for i in range(requests):
        city = CITIES[(offset + i) % len(CITIES)]
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"What is the weather like in {city} today?"}],
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "max_tokens": 120,
            "temperature": 0,
        }
        t0 = time.perf_counter()
        r = http.post(url + "/v1/chat/completions", json=body, headers=headers)
        ms = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        answer = r.json()
        [call] = answer["choices"][0]["message"]["tool_calls"]
        json.loads(call["function"]["arguments"])
        tokens = answer["usage"]["completion_tokens"]
        got["call_ms"].append(ms)
        got["call_tokens"].append(tokens)
        got["call_ms_per_token"].append(ms / tokens)
        plain = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"Tell me about {city}."}],
            "max_tokens": 32,
            "temperature": 0,
            "ignore_eos": True,
        }
        t0 = time.perf_counter()
        r = http.post(url + "/v1/chat/completions", json=plain, headers=headers)
        ms = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        got["plain_ms_per_token"].append(ms / r.json()["usage"]["completion_tokens"])
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="11982f4", help="the git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=6)
    args = parser.parse_args()

    from gguf_copy import copy_gguf

    from appliance.hive.engine import embedded_model_path

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
            servers[name] = serve(tree, model, str(work / f"data-{name}"))
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
            "ms per call",
            "call tokens",
            "ms per call token",
            "ms per plain token",
            "call / plain",
            "per call token vs before",
        ]
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for n in names:
            m = med[n]
            share = m["call_ms_per_token"] / m["plain_ms_per_token"]
            versus = m["call_ms_per_token"] / base["call_ms_per_token"]
            print(
                f"| {n} | {m['call_ms']:.0f} | {m['call_tokens']:.0f} | {m['call_ms_per_token']:.1f} | "
                f"{m['plain_ms_per_token']:.1f} | {share:.2f}x | {versus:.2f}x |"
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
