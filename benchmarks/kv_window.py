#!/usr/bin/env python3
"""How many KV cells attention walks per step, unified against split (and the default), with 8 clients.

The engine runs in this process on the embedded model. 8 clients send the 8-client cold workload
of compare.py (loadbench's 6 specialists' system prompts x 4 account variants, 24 requests, 48
tokens each). llama.cpp's own KV debug counters (LLAMA_KV_CACHE_DEBUG) give, at every ubatch, the
cells in use and the end of the used range (`used_max_p1`), which sets the attention window
(`n_kv`, padded to 256): with one unified pool every row walks every resident cell, split each
walks its own stream. Printed per layout: the window's median and maximum, and tokens/s.

  .venv/bin/python benchmarks/kv_window.py [--loadbench ../shared/bench/loadbench.py] [--layouts unified,split,default]
"""

from __future__ import annotations

import os

os.environ["LLAMA_KV_CACHE_DEBUG"] = "1"  # read when a context is made, so before any

import argparse
import asyncio
import ctypes
import importlib.util
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp
from machine import print_table

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, GenerationRequest, SamplingParams

LOADBENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "loadbench.py"
FIND_SLOT = re.compile(rb"stream\[(\d+)\], n = +(\d+), used = +(\d+)")


# name -> (--ctx, --kv-cache): the two layouts at 8192 cells, and the default (--ctx 0: on a CPU
# with the memory, 8 streams of the model's whole context).
LAYOUTS = {"unified": (8192, "unified"), "split": (8192, "split"), "default": (0, "auto")}


async def one_layout(layout: str, lb: object, seen: list[tuple[int, int, int]]) -> tuple[float, list[int]]:
    n_ctx, kv_cache = LAYOUTS[layout]
    engine = HiveEngine(
        EngineConfig(model_path=embedded_model_path(), slots=8, n_ctx=n_ctx, threads=0, kv_cache=kv_cache)
    )
    await engine.start()
    if not engine.loaded:
        raise SystemExit(f"the model did not load: {engine.status().load_error}")
    greedy = SamplingParams(temperature=0.0, logit_bias={engine._require().eos: -100.0})
    names = list(lb.SYSTEM_PROMPTS)  # type: ignore[attr-defined]

    def prompt(i: int) -> list[int]:
        # As compare.py's 8-client runs: every request a system prompt no earlier one had.
        system = f"Account {(i // len(names)) % 4} house rules apply. " + lb.SYSTEM_PROMPTS[names[i % len(names)]]  # type: ignore[attr-defined]
        user = lb.USER_TEXTS[i % len(lb.USER_TEXTS)] + f" (ref {i})"  # type: ignore[attr-defined]
        return engine.tokenize(engine.render_chat([("system", system), ("user", user)]))

    queue = list(range(24))
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            g = engine.submit(GenerationRequest(prompt_tokens=prompt(queue.pop(0)), max_tokens=48, sampling=greedy))
            async for _ in g:
                tokens += 1

    seen.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(8)))
    rate = tokens / (time.perf_counter() - t0)
    await engine.stop()
    return rate, [n for _, n, _ in seen]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loadbench", default=str(LOADBENCH))
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated subset of {','.join(LAYOUTS)}")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("loadbench", args.loadbench)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no loadbench at {args.loadbench}")
    lb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lb)
    seen: list[tuple[int, int, int]] = []

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        if m := FIND_SLOT.search(text or b""):
            seen.append((int(m[1]), int(m[2]), int(m[3])))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    rows = []
    for layout in args.layouts.split(","):
        rate, window = await one_layout(layout, lb, seen)
        cells = "8192" if LAYOUTS[layout][0] else "--ctx 0"
        rows.append(f"| {layout} ({cells}) | {statistics.median(window):.0f} | {max(window)} | {rate:.1f} |")
    print_table(
        "8 clients, 24 cold prompts (6 system prompts x 4 variants), 48 tokens each, 8 slots",
        ["KV layout", "cells attention walks per step (used_max_p1), median", "max", "tok/s"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main())
