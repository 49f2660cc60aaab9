#!/usr/bin/env python3
"""One llama.cpp step of 8 sequences with flash attention on and off: split streams and a unified
pool, decode rows (8 x 1) and prompt rows (8 x 25), after H tokens of history per sequence.

Each (layout, flash attention) pair gets a fresh context on the same loaded model; the history is
prefilled, then the step is timed --repeats times (each time on top of the same history: the step's
cells are removed again). The table gives medians in ms. This is the measurement behind
`--flash-attn auto` (docs/decisions/006-step-shape.md).

  .venv/bin/python benchmarks/attention_step.py [--model GGUF] [--history 100,300,600,1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import cpu_count, print_table

from appliance.engine.engine import embedded_model_path
from appliance.engine.native.llama import Batch, Context, Model

SEQS = 8
STREAM = 2048  # cells per sequence: room for the longest history and the step


def step_ms(ctx: Context, batch: Batch, history: int, rows: int, repeats: int) -> float:
    ctx.clear()
    for seq in range(SEQS):  # the history, a sequence at a time
        for start in range(0, history, 256):
            batch.clear()
            for pos in range(start, min(history, start + 256)):
                batch.add(1 + (pos * 7 + seq) % 1000, pos, seq, False)
            if ctx.decode(batch) != 0:
                raise RuntimeError("llama_decode failed while prefilling the history")
    times = []
    for _ in range(repeats):
        batch.clear()
        for seq in range(SEQS):
            for r in range(rows):
                batch.add(1 + (seq + r) % 1000, history + r, seq, r == rows - 1)
        t0 = time.perf_counter()
        if ctx.decode(batch) != 0:
            raise RuntimeError("llama_decode failed")
        times.append(1000 * (time.perf_counter() - t0))
        for seq in range(SEQS):
            ctx.seq_rm(seq, history, -1)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="GGUF (default: the embedded model)")
    ap.add_argument("--history", default="100,300,600,1000")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=cpu_count())
    ap.add_argument("--safe-kernels", action="store_true", help="without llama.cpp's extra buffer types")
    args = ap.parse_args()
    path = args.model or embedded_model_path()
    model = Model(path, gpu=False, extra_bufts=not args.safe_kernels)
    histories = [int(h) for h in args.history.split(",")]
    batch = Batch(512)
    results: dict[tuple[str, int, int, str], float] = {}
    for unified in (False, True):
        for flash in ("on", "off"):
            ctx = Context(
                model,
                n_ctx=STREAM * SEQS,
                n_seq=SEQS,
                n_batch=512,
                threads=args.threads,
                flash=flash,
                unified=unified,
            )
            layout = "unified" if unified else "split"
            for h in histories:
                for rows in (1, 25):
                    results[(layout, rows, h, flash)] = step_ms(ctx, batch, h, rows, args.repeats)
            ctx.close()
    batch.close()
    model.close()
    lines = []
    for layout in ("split", "unified"):
        for rows in (1, 25):
            on = " / ".join(f"{results[(layout, rows, h, 'on')]:.1f}" for h in histories)
            off = " / ".join(f"{results[(layout, rows, h, 'off')]:.1f}" for h in histories)
            ratio = " / ".join(
                f"{results[(layout, rows, h, 'off')] / results[(layout, rows, h, 'on')]:.2f}" for h in histories
            )
            lines.append(f"| {SEQS} x {rows} rows, {layout} | {on} | {off} | {ratio} |")
    print_table(
        f"Model: {Path(path).name}; {args.threads} threads; kernels {'safe' if args.safe_kernels else 'fast'}; "
        f"history H = {' / '.join(map(str, histories))} tokens per sequence; medians of {args.repeats} steps, ms",
        ["step", "flash attention on", "off", "off / on"],
        lines,
    )


if __name__ == "__main__":
    main()
