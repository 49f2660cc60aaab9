#!/usr/bin/env python3
"""The engine's host time per decode step, by batch size: everything in a step but `llama_decode`
(admitting, building the batch, sampling, detokenising, handing out tokens), against the budget of
5% of a one-token decode step on this machine.

The engine runs in this process on the embedded model (no HTTP). For each batch size N, N greedy
requests generate --tokens tokens each with the end-of-generation token banned, so every step
decodes exactly N new tokens; the table gives the median over --repeats runs of the per-step means
that the engine's own step profile records.

  .venv/bin/python benchmarks/host_budget.py [--sizes 1,2,4,8] [--kv-cache unified|split]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import print_table

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, GenerationRequest, SamplingParams

TOPICS = ["rivers", "bees", "volcanoes", "trains", "chess", "coffee", "owls", "bridges"]


async def one_size(engine: HiveEngine, n: int, tokens: int) -> tuple[float, float]:
    """(ms in llama_decode, ms of host time) per decode-only step of batch size n, this run."""
    model = engine._require()
    sampling = SamplingParams(temperature=0.0, logit_bias={model.eos: -100.0})
    prompts = [
        engine.tokenize(engine.render_chat([("user", f"Tell me everything about {TOPICS[i % len(TOPICS)]}.")]))
        for i in range(n)
    ]
    profile = engine._scheduler.stats.profile  # type: ignore[union-attr]
    before = list(profile.by_size.get(n, [0, 0.0, 0.0]))
    gens = [engine.submit(GenerationRequest(prompt_tokens=p, max_tokens=tokens, sampling=sampling)) for p in prompts]
    for g in gens:
        async for _ in g:
            pass
    await asyncio.sleep(0.2)  # the step that delivered the last token is added to the profile after it
    count, decode, whole = (a - b for a, b in zip(profile.by_size[n], before, strict=True))
    return 1000 * decode / count, 1000 * (whole - decode) / count


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: the engine's default")
    ap.add_argument("--kv-cache", default="unified", choices=("unified", "split"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = HiveEngine(
        EngineConfig(
            model_path=embedded_model_path(),
            slots=max(sizes),
            n_ctx=8192,
            threads=args.threads,
            kv_cache=args.kv_cache,
            cpu_kernels="auto",
        )
    )
    await engine.start()
    if not engine.loaded:
        raise SystemExit(f"the model did not load: {engine.status().load_error}")
    rows: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    for _ in range(args.repeats):
        for n in sizes:  # sizes alternate within each repeat
            rows[n].append(await one_size(engine, n, args.tokens))
    await engine.stop()
    one = statistics.median(d for d, _ in rows[sizes[0]]) if sizes[0] == 1 else None
    lines = []
    for n in sizes:
        decode = statistics.median(d for d, _ in rows[n])
        host = statistics.median(h for _, h in rows[n])
        share = f"{100 * host / one:.1f}%" if one else "-"
        lines.append(f"| {n} | {decode:.2f} | {host:.3f} | {host / n:.3f} | {share} |")
    print_table(
        f"Model: {Path(embedded_model_path()).name}; KV cache {args.kv_cache}; {args.repeats} repeats, medians",
        ["batch", "llama_decode ms/step", "host ms/step", "host per slot ms", "host / one-token step"],
        lines,
    )
    if one:
        print(f"\nBudget: host time at most 5% of a one-token step = {0.05 * one:.3f} ms.")


if __name__ == "__main__":
    try:  # the event loop `alveare serve` runs on (uvicorn picks uvloop where it is installed)
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
