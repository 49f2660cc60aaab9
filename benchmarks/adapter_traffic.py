#!/usr/bin/env python3
"""What mixed-adapter traffic costs the engine against single-adapter traffic (issue 36): the same
8 concurrent greedy requests of --tokens tokens each (end-of-generation banned, so equal work), all
on the base model, all under one LoRA adapter, 4 under an adapter beside 4 without, and 4 under
each of two adapters. llama.cpp applies adapters per context, so the engine decodes each adapter's
rows in turns (engine/adapter_turns.py): a mixed step is two decodes, and each change of adapter
re-reserves llama.cpp's compute graph.

The engine runs in this process on the embedded model (no HTTP), with random rank-8 adapters on
every block's attn_q and attn_v (appliance/models/lora_file.py); the mixes are run in turn,
--repeats times, and the table gives medians of the generated tokens per second.

  .venv/bin/python benchmarks/adapter_traffic.py [--tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gguf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import cpu_count, print_table

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import AdapterFile, EngineConfig, GenerationRequest, SamplingParams
from appliance.models.lora_file import architecture, random_pairs, write_adapter

TOPICS = ["rivers", "bees", "volcanoes", "trains", "chess", "coffee", "owls", "bridges"]
MIXES = {
    "8 on the base model": [""] * 8,
    "8 under one adapter": ["a"] * 8,
    "4 under an adapter + 4 without": ["a", ""] * 4,
    "4 under each of two adapters": ["a", "b"] * 4,
}


async def run(engine: HiveEngine, adapters: list[str], tokens: int) -> float:
    """Generated tokens per second for one request per entry, all submitted at once."""
    model = engine._require()
    sampling = SamplingParams(temperature=0.0, logit_bias={model.eos: -100.0})
    prompts = [engine.tokenize(engine.render_chat([("user", f"Tell me everything about {t}.")])) for t in TOPICS]
    t0 = time.perf_counter()
    gens = [
        engine.submit(GenerationRequest(prompt_tokens=p, max_tokens=tokens, sampling=sampling, adapter=a))
        for p, a in zip(prompts, adapters, strict=True)
    ]
    for g in gens:
        async for _ in g:
            pass
    return sum(g.finished.completion_tokens for g in gens if g.finished) / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=cpu_count())
    args = ap.parse_args()
    path = embedded_model_path()
    reader = gguf.GGUFReader(path)
    with tempfile.TemporaryDirectory(prefix="adapter-traffic-") as tmp:
        files = {}
        for name, seed in (("a", 7), ("b", 8)):
            files[name] = AdapterFile(str(Path(tmp) / f"{name}.gguf"))
            write_adapter(random_pairs(reader, 8, seed=seed), architecture(reader), 16.0, Path(files[name].path))
        engine = HiveEngine(
            EngineConfig(model_path=path, slots=8, n_ctx=8 * 1024, threads=args.threads, adapters=files)
        )
        await engine.start()
        if not engine.loaded:
            raise SystemExit(f"the engine did not load: {engine.status().load_error}")
        await run(engine, MIXES["4 under each of two adapters"], 8)  # warm: every adapter once
        rates: dict[str, list[float]] = {name: [] for name in MIXES}
        for _ in range(args.repeats):
            for name, adapters in MIXES.items():
                rates[name].append(await run(engine, adapters, args.tokens))
        await engine.stop()
    base = statistics.median(rates["8 on the base model"])
    print_table(
        f"Model: {Path(path).name}; {args.threads} threads; 8 slots; 8 concurrent greedy requests of {args.tokens} "
        f"tokens (end-of-generation banned); rank-8 adapters on attn_q and attn_v; medians of {args.repeats} runs",
        ["traffic", "tokens/s", "vs the base model"],
        [f"| {name} | {statistics.median(r):.1f} | {statistics.median(r) / base:.2f}x |" for name, r in rates.items()],
    )


if __name__ == "__main__":
    asyncio.run(main())
