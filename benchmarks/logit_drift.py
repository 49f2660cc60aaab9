#!/usr/bin/env python3
"""How far a batch's company moves greedy answers on this device: 8 chat prompts decoded greedily,
each alone and then all 8 in one batch (one sequence each, a row per step), with llama.cpp directly.

Prints, over the 8 prompts: the largest logit difference (anywhere in the vocabulary) before an
answer first parts from its solo run, and the top-two logit gap of the solo run where each parted.
tests/near_tie.py bounds what engine tests accept with the same kind of measurement; this script
shows the size of the effect on a device (on an H200, answers parted on gaps up to 0.86).

  .venv/bin/python benchmarks/logit_drift.py [--model PATH] [--gpu] [--tokens 40]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from machine import cpu_name, gpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.engine.engine import embedded_model_path
from appliance.engine.native.llama import Batch, Context, Model, quiet_native_logs

TOPICS = ("the moon", "honey bees", "the Roman empire", "volcanoes", "the ocean", "chess", "rain", "copper")
TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant. Answer in one sentence.<|im_end|>\n"
    "<|im_start|>user\nTell me one fact about {}. Explain it in detail.<|im_end|>\n<|im_start|>assistant\n"
)


def greedy(model: Model, prompts: list[list[int]], n_tokens: int) -> list[tuple[list[int], list[np.ndarray]]]:
    """Each prompt's greedy answer and the logits row of every answer token, the prompts decoded as
    sequences of one context (the same context shape alone or together): prefilled one after the
    other, then a row each per step."""
    ctx = Context(model, n_ctx=8192, n_seq=len(TOPICS), n_batch=2048, threads=8, flash="auto")
    batch = Batch(2048)
    tokens = [list(p) for p in prompts]
    rows: list[list[np.ndarray]] = [[] for _ in prompts]
    try:
        for seq, prompt in enumerate(prompts):
            batch.clear()
            for pos, token in enumerate(prompt):
                batch.add(token, pos, seq, logits=pos == len(prompt) - 1)
            assert ctx.decode(batch) == 0
            row = np.array(ctx.logits(len(prompt) - 1, model.n_vocab))
            rows[seq].append(row)
            tokens[seq].append(int(row.argmax()))
        for _ in range(n_tokens):
            batch.clear()
            for seq, toks in enumerate(tokens):
                batch.add(toks[-1], len(toks) - 1, seq, logits=True)
            assert ctx.decode(batch) == 0
            for seq, toks in enumerate(tokens):
                row = np.array(ctx.logits(seq, model.n_vocab))
                rows[seq].append(row)
                toks.append(int(row.argmax()))
        return [(toks[len(p) :], r) for toks, p, r in zip(tokens, prompts, rows, strict=True)]
    finally:
        batch.close()
        ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a GGUF file (the embedded model by default)")
    parser.add_argument("--gpu", action="store_true", help="offload every layer (a CUDA build)")
    parser.add_argument("--tokens", type=int, default=40, help="answer tokens per prompt")
    args = parser.parse_args()
    quiet_native_logs()
    model = Model(args.model or embedded_model_path(), gpu=args.gpu)
    try:
        prompts = [model.tokenize(TEMPLATE.format(t), add_special=False, parse_special=True) for t in TOPICS]
        solo = [greedy(model, [p], args.tokens)[0] for p in prompts]
        together = greedy(model, prompts, args.tokens)
    finally:
        model.close()
    drift, gaps = 0.0, []
    for (alone, alone_rows), (batched, batched_rows) in zip(solo, together, strict=True):
        for k, (a, b) in enumerate(zip(alone_rows, batched_rows, strict=True)):
            if alone[k] != batched[k]:
                top = np.sort(a)[::-1]
                gaps.append(round(float(top[0] - top[1]), 3))
                break
            drift = max(drift, float(np.abs(a - b).max()))
    device = "gpu" if args.gpu else "cpu"
    print(f"CPU: {cpu_name()}" + (f"; GPU: {gpu_name()}" if args.gpu else ""))
    parted = f"{len(gaps)} of {len(prompts)} answers parted from their solo runs"
    print(f"device {device}: {parted}, at top-two gaps {sorted(gaps)}")
    print(f"largest logit difference before a parting: {drift:.3f}")


if __name__ == "__main__":
    main()
