#!/usr/bin/env python3
"""What a LoRA adapter costs llama.cpp per step, alone and mixed with rows that have none, and
whether llama.cpp applies a GGUF adapter exactly as merging it into the weights would (issue 36).

The adapter is made here with the `gguf` package: random rank-R matrices on every block's attn_q
and attn_v (llama.cpp's layout: `<tensor>.lora_a` is R x n_in, `.lora_b` n_out x R, scale alpha/R).

- Exactness: an all-F32 copy of the model (so no activation is quantised on the way), the same copy
  with the adapter merged into its weights (W + alpha/R * B @ A), and the F32 copy with the adapter
  applied by llama.cpp: the last prompt token's logits, the largest difference and the KL divergence.
  (On a quantised model the comparison measures the quantisation of activations instead: a change
  of 1e-6 in an activation flips some of its Q8 roundings in the next layer.)
- Cost: one decode step of 8 sequences x 1 row on the model given (default: the embedded one), after
  a short prompt each: no adapter; the adapter on all 8; 4 with and 4 without on one context
  (`llama_set_adapters_lora` before each half, as llama.cpp applies adapters per context); and the
  two halves in two contexts that keep their adapter set. Medians of --repeats steps, ms.

  .venv/bin/python benchmarks/adapter_mix.py [--model GGUF] [--rank 8] [--repeats 40]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gguf
import llama_cpp as ll
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import cpu_count, print_table

from appliance.engine.engine import embedded_model_path
from appliance.engine.native.llama import Batch, Context, Model
from appliance.models.lora_file import architecture, random_pairs, write_adapter, write_f32

ALPHA = 16.0
TARGETS = ("attn_q", "attn_v")
PROMPT = "<|im_start|>user\nTell me about bees, rivers and the sea.<|im_end|>\n<|im_start|>assistant\n"
SEQS = 8


def set_adapter(ctx: Context, adapter: object | None) -> None:
    if adapter is None:
        rc = ll.llama_set_adapters_lora(ctx.ptr, None, 0, None)
    else:
        one = (ll.llama_adapter_lora_p_ctypes * 1)(adapter)
        rc = ll.llama_set_adapters_lora(ctx.ptr, one, 1, (ctypes.c_float * 1)(1.0))
    if rc != 0:
        raise RuntimeError("llama.cpp refused the adapter")


def last_logits(path: Path, adapter_path: Path | None, threads: int) -> np.ndarray:
    model = Model(str(path), gpu=False)
    ctx = Context(model, n_ctx=512, n_seq=1, n_batch=512, threads=threads, flash="off")
    if adapter_path is not None:
        set_adapter(ctx, ll.llama_adapter_lora_init(model.ptr, str(adapter_path).encode()))
    tokens = model.tokenize(PROMPT, add_special=False, parse_special=True)
    batch = Batch(512)
    for i, t in enumerate(tokens):
        batch.add(t, i, 0, i == len(tokens) - 1)
    if ctx.decode(batch) != 0:
        raise RuntimeError("llama_decode failed")
    n_vocab = ll.llama_vocab_n_tokens(model.vocab)
    row = np.array(ctx.logits(len(tokens) - 1, n_vocab), dtype=np.float64)
    batch.close()
    ctx.close()
    model.close()
    return row


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    lp = p_logits - p_logits.max()
    lp -= np.log(np.exp(lp).sum())
    lq = q_logits - q_logits.max()
    lq -= np.log(np.exp(lq).sum())
    return float(max((np.exp(lp) * (lp - lq)).sum(), 0.0))


class Steps:
    """Decode steps of one row per sequence on a model, each context's positions kept."""

    def __init__(self, model: Model, threads: int) -> None:
        self.model = model
        self.threads = threads
        self.tokens = model.tokenize(PROMPT, add_special=False, parse_special=True)
        self.batch = Batch(512)
        self.pos: dict[tuple[int, int], int] = {}

    def context(self, seqs: int) -> Context:
        ctx = Context(self.model, n_ctx=seqs * 512, n_seq=seqs, n_batch=512, threads=self.threads, flash="on")
        for seq in range(seqs):
            self.batch.clear()
            for i, t in enumerate(self.tokens):
                self.batch.add(t, i, seq, False)
            if ctx.decode(self.batch) != 0:
                raise RuntimeError("llama_decode failed while prefilling")
            self.pos[(id(ctx), seq)] = len(self.tokens)
        return ctx

    def step(self, ctx: Context, seqs: range) -> None:
        self.batch.clear()
        for seq in seqs:
            key = (id(ctx), seq)
            self.batch.add(100 + seq, self.pos[key], seq, True)
            self.pos[key] += 1
        if ctx.decode(self.batch) != 0:
            raise RuntimeError("llama_decode failed")


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="GGUF for the step costs (default: the embedded model)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--threads", type=int, default=cpu_count())
    args = ap.parse_args()
    path = Path(args.model or embedded_model_path())
    reader = gguf.GGUFReader(str(path))
    pairs = random_pairs(reader, args.rank, targets=TARGETS)
    with tempfile.TemporaryDirectory(prefix="adapter-mix-") as tmp:
        adapter = Path(tmp) / "adapter.gguf"
        write_adapter(pairs, architecture(reader), ALPHA, adapter)
        write_f32(reader, Path(tmp) / "f32.gguf")
        write_f32(reader, Path(tmp) / "merged.gguf", pairs, ALPHA)
        plain = last_logits(Path(tmp) / "f32.gguf", None, args.threads)
        applied = last_logits(Path(tmp) / "f32.gguf", adapter, args.threads)
        merged = last_logits(Path(tmp) / "merged.gguf", None, args.threads)

        model = Model(str(path), gpu=False)
        lora = ll.llama_adapter_lora_init(model.ptr, str(adapter).encode())
        steps = Steps(model, args.threads)
        whole = steps.context(SEQS)
        costs = {"8 rows, no adapter": median_ms(lambda: steps.step(whole, range(SEQS)), args.repeats)}
        set_adapter(whole, lora)
        costs["8 rows, all with the adapter"] = median_ms(lambda: steps.step(whole, range(SEQS)), args.repeats)

        def switching() -> None:
            set_adapter(whole, lora)
            steps.step(whole, range(4))
            set_adapter(whole, None)
            steps.step(whole, range(4, SEQS))

        costs["4 with + 4 without, one context, switching"] = median_ms(switching, args.repeats)
        with_ctx, without_ctx = steps.context(4), steps.context(4)
        set_adapter(with_ctx, lora)
        costs["4 with + 4 without, two contexts"] = median_ms(
            lambda: (steps.step(with_ctx, range(4)), steps.step(without_ctx, range(4))), args.repeats
        )
        costs["4 rows, no adapter"] = median_ms(lambda: steps.step(without_ctx, range(4)), args.repeats)
    base = costs["8 rows, no adapter"]
    print_table(
        f"Model: {path.name}; {args.threads} threads; rank-{args.rank} adapter on {' and '.join(TARGETS)} of every "
        f"block (alpha {ALPHA:g})\n\nExactness (all-F32 copy): applied vs merged: largest logit difference "
        f"{np.abs(applied - merged).max():.2e}, KL {kl(merged, applied):.1e}; the adapter's own effect: largest "
        f"logit difference {np.abs(applied - plain).max():.2f}, KL {kl(plain, applied):.1e}\n\n"
        f"Step costs: medians of {args.repeats} steps",
        ["step", "ms", "vs 8 rows without"],
        [f"| {name} | {ms:.2f} | {ms / base:.2f}x |" for name, ms in costs.items()],
    )


if __name__ == "__main__":
    main()
