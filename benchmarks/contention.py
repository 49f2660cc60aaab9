#!/usr/bin/env python3
"""Alveare under CPU contention: tokens/s of one streaming client while another process keeps one
core busy, with the default adaptive thread count and with the thread count fixed at every core.

A Python busy loop pinned to core 0 is the hog. For each configuration the server starts on a
fresh data dir; one client sends --requests requests (max_tokens 32, temperature 0) without the
hog, then with it. Printed: the CPU, tokens/s both ways and the ratio (what is left of the quiet
speed). With one core taken from two, the fair ratio is about 0.5; a collapse is far below.

  .venv/bin/python benchmarks/contention.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time

import httpx
from machine import cpu_name, free_port, start

ASK = [{"role": "user", "content": "Tell me about the history of tea in a few sentences."}]


def hog() -> None:
    os.sched_setaffinity(0, {0})
    while True:
        pass


def rate(url: str, key: str, requests: int) -> float:
    tokens, seconds = 0, 0.0
    with httpx.Client(timeout=600) as http:
        for _ in range(requests):
            t0 = time.perf_counter()
            r = http.post(
                url + "/v1/chat/completions",
                json={"model": "chat", "messages": ASK, "max_tokens": 32, "temperature": 0},
                headers={"Authorization": f"Bearer {key}"},
            )
            r.raise_for_status()
            seconds += time.perf_counter() - t0
            tokens += r.json()["usage"]["completion_tokens"]
    return tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=6)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    for label, extra in (("adaptive (default)", []), (f"fixed --threads {cores}", ["--threads", str(cores)])):
        port = free_port()
        with tempfile.TemporaryDirectory() as data:
            proc, key = start(port, data, extra)
            url = f"http://127.0.0.1:{port}"
            try:
                rate(url, key, 2)  # warm-up
                quiet = rate(url, key, args.requests)
                busy = multiprocessing.Process(target=hog, daemon=True)
                busy.start()
                try:
                    time.sleep(1)
                    contended = rate(url, key, args.requests)
                    threads = httpx.get(
                        url + "/v1/hive/status", headers={"Authorization": f"Bearer {key}"}, timeout=10
                    ).json()["cpu"]["threads"]
                finally:
                    busy.kill()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        rows.append((label, quiet, contended, threads))
    print(f"CPU: {cpu_name()}")
    print(f"1 client, {args.requests} requests of 32 tokens each way; the hog is a busy loop pinned to core 0\n")
    print("| threads | quiet tok/s | with a core busy | busy / quiet | threads in use when busy |")
    print("|---|---|---|---|---|")
    for label, quiet, contended, threads in rows:
        print(f"| {label} | {quiet:.1f} | {contended:.1f} | {contended / quiet:.2f}x | {threads} |")


if __name__ == "__main__":
    main()
