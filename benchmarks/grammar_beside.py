#!/usr/bin/env python3
"""Does a grammar-constrained request slow down the plain requests decoding beside it?

One `alveare serve` on the embedded model (fresh data dir, loopback). Three scenarios, alternated
A, B, C, A, B, C, ... so machine noise falls on all: A = 8 plain streaming clients; B = 1 client in
JSON mode (response_format json_object, so every token goes through the grammar) beside 7 plain
ones; C = B's question without the grammar beside 7 plain ones, so B / C isolates the grammar from
the different workload of the odd client.
Each client sends --requests requests one after another (max_tokens 48, temperature 0). Reported
for the plain clients only: tokens/s per client and the median gap between streamed tokens, as
medians over repeats, with the B/A ratios from the same run.

  .venv/bin/python benchmarks/grammar_beside.py --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import threading
import time

import httpx
from machine import cpu_name, free_port, start

PLAIN = [{"role": "user", "content": "Tell me about the history of tea in a few sentences."}]
JSON_ASK = [{"role": "user", "content": "Describe a tea in a JSON object with several fields."}]


def client(url: str, key: str, kind: str, requests: int, out: list) -> None:
    """kind: "plain"; "json" (the JSON question in JSON mode); "ask" (the same question, no grammar)."""
    body = {"model": "chat", "max_tokens": 48, "temperature": 0, "stream": True}
    body["messages"] = PLAIN if kind == "plain" else JSON_ASK
    if kind == "json":
        body["response_format"] = {"type": "json_object"}
    constrained = kind != "plain"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=300) as http:
        for _ in range(requests):
            t0 = time.perf_counter()
            stamps = []
            with http.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            stamps.append(time.perf_counter())
            out.append((constrained, t0, time.perf_counter(), stamps))


def scenario(url: str, key: str, odd: str | None, requests: int) -> dict:
    """8 clients: all plain, or one of kind `odd` beside 7 plain ones."""
    results: list = []
    kinds = [odd if (odd and i == 0) else "plain" for i in range(8)]
    threads = [threading.Thread(target=client, args=(url, key, kinds[i], requests, results)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    plain = [r for r in results if not r[0]]
    rates = [len(s) / (end - t0) for _, t0, end, s in plain if s]
    gaps = [b - a for *_, s in plain for a, b in itertools.pairwise(s)]
    return {"plain_tok_s_per_client": statistics.median(rates), "plain_gap_ms_p50": 1000 * statistics.median(gaps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3, help="requests per client per scenario")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc, key = start(port, data)
        url = f"http://127.0.0.1:{port}"
        try:
            scenario(url, key, "json", 1)  # warm-up: prefix cache and grammar memo
            scenario(url, key, "ask", 1)
            runs: dict[str, list[dict]] = {"A": [], "B": [], "C": []}
            for _ in range(args.repeats):
                runs["A"].append(scenario(url, key, None, args.requests))
                runs["B"].append(scenario(url, key, "json", args.requests))
                runs["C"].append(scenario(url, key, "ask", args.requests))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(f"CPU: {cpu_name()}")
    print(f"{args.repeats} alternated repeats, 8 clients x {args.requests} streamed requests, max_tokens 48\n")
    print("| scenario | plain clients' tok/s per client | plain clients' token gap p50 |")
    print("|---|---|---|")
    print(f"| A: 8 plain | {med['A']['plain_tok_s_per_client']:.2f} | {med['A']['plain_gap_ms_p50']:.0f} ms |")
    b = med["B"]
    print(f"| B: 1 JSON mode + 7 plain | {b['plain_tok_s_per_client']:.2f} | {b['plain_gap_ms_p50']:.0f} ms |")
    c = med["C"]
    label = "C: B's question, no grammar + 7 plain"
    print(f"| {label} | {c['plain_tok_s_per_client']:.2f} | {c['plain_gap_ms_p50']:.0f} ms |")
    for name, top, bottom in (("B / A", "B", "A"), ("B / C (the grammar alone)", "B", "C")):
        rate = med[top]["plain_tok_s_per_client"] / med[bottom]["plain_tok_s_per_client"]
        gap = med[top]["plain_gap_ms_p50"] / med[bottom]["plain_gap_ms_p50"]
        print(f"| {name} | {rate:.2f}x | {gap:.2f}x |")
    print("\nper repeat:", json.dumps(runs))


if __name__ == "__main__":
    main()
