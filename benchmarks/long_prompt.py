#!/usr/bin/env python3
"""Time to the first token of a long prompt: Alveare against llama-server on the same GGUF (the file
Alveare serves), one request at a time, each prompt new from its first word (no cache can help).

Both servers run the whole time with the same room per request: Alveare as a user starts it (8
slots, `--ctx 0`: 8192 cells each on a CPU), llama-server split with `-c 65536 --parallel 8` (8192
each). For each --length (words of notes; about 8.5 tokens a word), --repeats requests per server,
alternated, `max_tokens` 1. The table gives the median latency, llama-server's own prompt-eval time
for its requests, and the ratio.

  .venv/bin/python benchmarks/long_prompt.py --model COPY.gguf [--length 250,600] [--repeats 4]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from comparison.servers import MODEL_NAME, Alveare, LlamaServerSplit, Server, log_lines, probe_settings  # noqa: E402
from machine import cpu_count, cpu_name  # noqa: E402

TOPICS = ["bees", "rivers", "volcanoes", "trains", "chess", "coffee", "owls", "bridges"]
PROMPT_EVAL_RE = re.compile(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens")


class LlamaServerLong(LlamaServerSplit):
    """llama-server's split streams with 8192 cells per slot, Alveare's room per request."""

    name = "llama-server-split"

    def build_command(self) -> list[str]:
        command = self.base_command()
        command[command.index("-c") + 1] = "65536"
        return command


def notes(seed: int, words: int) -> str:
    """A prompt whose first word already differs from every other's."""
    return f"Notes {seed}: " + " ".join(f"{TOPICS[(j + seed) % 8]} {j * 7 + seed}" for j in range(words)) + "."


def ask(server: Server, seed: int, words: int) -> tuple[float, int]:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": notes(seed, words) + " Summarise."}],
        "max_tokens": 1,
        "temperature": 0,
    }
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {server.key}"} if server.key else {}
    r = httpx.post(server.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=600)
    r.raise_for_status()
    return time.perf_counter() - started, r.json()["usage"]["prompt_tokens"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the GGUF Alveare serves (its optimised copy)")
    ap.add_argument("--length", default="250,600", help="words of notes per prompt")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=cpu_count())
    ap.add_argument("--llama-server", default=str(HERE / ".work/llama-build/bin/llama-server"))
    args = ap.parse_args()
    ns = probe_settings(args.threads, args.llama_server)
    logdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"long-prompt-{os.getpid()}"
    logdir.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = [Alveare(ns, Path(args.model), logdir), LlamaServerLong(ns, Path(args.model), logdir)]
    rows = []
    try:
        for server in servers:
            server.start()
            ask(server, 1, 20)  # warm
        seed = 1000
        for words in (int(w) for w in args.length.split(",")):
            times: dict[str, list[float]] = {s.name: [] for s in servers}
            tokens: dict[str, int] = {}
            llama = servers[1]
            evals_before = len(log_lines(llama.logfile))
            for rep in range(args.repeats):
                for server in servers if rep % 2 == 0 else servers[::-1]:
                    seed += 1
                    took, n = ask(server, seed, words)
                    times[server.name].append(took)
                    tokens[server.name] = n
            evals = [
                float(m.group(1)) / 1000
                for line in log_lines(llama.logfile)[evals_before:]
                if (m := PROMPT_EVAL_RE.search(line))
            ]
            a, lsrv = (statistics.median(times[s.name]) for s in servers)
            rows.append(
                f"| {tokens[servers[0].name]} / {tokens[servers[1].name]} | {a:.2f} | {lsrv:.2f} | "
                f"{statistics.median(evals) if evals else float('nan'):.2f} | {a / lsrv:.2f}x |"
            )
    finally:
        for server in servers:
            server.stop()
    print(f"CPU: {cpu_name()}")
    print(
        f"Model: {Path(args.model).name}; {args.threads} threads; one request at a time, max_tokens 1, every "
        f"prompt new; medians of {args.repeats} per server, alternated; llama-server -c 65536 --parallel 8\n"
    )
    print("| prompt tokens (Alveare / llama-server) | Alveare s | llama-server s | its prompt eval s | ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
