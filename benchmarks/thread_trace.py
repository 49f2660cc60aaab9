#!/usr/bin/env python3
"""The adaptive thread count beside a second llama.cpp process, step by step.

The engine runs in this process on the embedded model with its default (adaptive) threads; one
client sends greedy 48-token requests one after another: --quiet of them alone, --busy beside the
hog (benchmarks/comparison/hog.py: llama-cpp-python decoding the same model with every core's
worth of threads), then --after once the hog has stopped. Every decode step's thread count and
time is recorded, so the table shows what tokens/s alone does not: how many steps tried all the
threads while the hog ran, the slowest step (a try at the wrong count stalls the stream), and how
soon after the hog stopped the engine used every core again.

  .venv/bin/python benchmarks/thread_trace.py [--quiet 4] [--busy 24] [--after 8]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import cpu_count, print_table

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, GenerationRequest, SamplingParams

HOG = Path(__file__).resolve().parent / "comparison" / "hog.py"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quiet", type=int, default=4, help="requests before the hog starts")
    ap.add_argument("--busy", type=int, default=24, help="requests beside the hog")
    ap.add_argument("--after", type=int, default=8, help="requests after it stopped")
    args = ap.parse_args()
    model_path = embedded_model_path()
    engine = HiveEngine(EngineConfig(model_path=model_path, slots=8, n_ctx=8192))
    await engine.start()
    if not engine.loaded:
        raise SystemExit(f"the model did not load: {engine.status().load_error}")
    policy = engine._scheduler.threads  # type: ignore[union-attr]
    steps: list[tuple[float, int, float]] = []  # (when, threads, seconds per row)
    observe = policy.observe

    def recording(threads: int, seconds: float, rows: int) -> None:
        steps.append((time.perf_counter(), threads, seconds / max(rows, 1)))
        observe(threads, seconds, rows)

    policy.observe = recording  # type: ignore[method-assign]
    model = engine._require()
    greedy = SamplingParams(temperature=0.0, logit_bias={model.eos: -100.0})

    async def requests(n: int) -> float:
        t0, tokens = time.perf_counter(), 0
        for i in range(n):
            prompt = engine.tokenize(engine.render_chat([("user", f"Tell me everything about topic {i}.")]))
            async for _ in engine.submit(GenerationRequest(prompt_tokens=prompt, max_tokens=48, sampling=greedy)):
                tokens += 1
        return tokens / (time.perf_counter() - t0)

    rows = []

    def phase(name: str, since: float, rate: float, extra: str = "") -> None:
        mine = [s for s in steps if s[0] >= since]
        full = sum(1 for s in mine if s[1] == policy.most)
        slowest = max((s[2] for s in mine), default=0.0)
        rows.append(f"| {name} | {rate:.1f} | {len(mine)} | {full} | {1000 * slowest:.0f} | {extra} |")

    t = time.perf_counter()
    phase("quiet", t, await requests(args.quiet))
    hog = subprocess.Popen(
        [sys.executable, str(HOG), "--kind", "llama", "--threads", str(cpu_count()), "--model", model_path],
        stdout=subprocess.PIPE,
        text=True,
    )
    hog.stdout.readline()  # type: ignore[union-attr]  # "ready": it is decoding
    t = time.perf_counter()
    phase("beside the hog", t, await requests(args.busy))
    hog.terminate()
    hog.wait()
    stopped = time.perf_counter()
    rate = await requests(args.after)
    back = next((s[0] - stopped for s in steps if s[0] >= stopped and s[1] == policy.most), None)
    phase("after it stopped", stopped, rate, "never" if back is None else f"{back:.2f} s")
    await engine.stop()
    print_table(
        f"Model: {Path(model_path).name}; adaptive threads, up to {policy.most}; 1 client, 48-token requests",
        ["phase", "tok/s", "decode steps", "steps at all threads", "slowest step ms/row", "all threads again after"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main())
