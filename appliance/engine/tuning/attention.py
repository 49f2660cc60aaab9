"""Flash attention on a CPU's split KV streams: measured once per model shape, llama.cpp build and
CPU, not assumed.

Which is faster depends on the CPU and its kernels: on one class llama.cpp's CPU flash-attention path
costs a decode step more the longer the streams are, on another it is the faster path for decode
steps and only prompt rows on top of a history favour it off (docs/decisions/006-step-shape.md). So
where `--flash-attn auto` leaves the choice open (engine.flash_attention), the load times a turn
both ways on a small scratch context: a step of PROMPT_ROWS prompt rows for each of SEQS sequences
on HISTORY tokens of history, then PROMPT_ROWS one-row decode steps (a turn that answers with as
many tokens as it was sent). Off is kept only when its turn is at least OFF_MARGIN cheaper, since
off costs memory (V stored transposed touches a page of every V row of every stream). The verdict is
remembered beside the kernel check's, keyed by what decides it, so the embedded model's copies with
other chat templates (the same weights) share one.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from appliance.engine.native.kernels import VerdictCache
from appliance.engine.native.llama import Batch, Context, Model

log = logging.getLogger("alveare.hive")

SEQS = 8
HISTORY = 128
PROMPT_ROWS = 25
REPEATS = 3
# Off must make a turn at least this much cheaper: it costs memory, and on costs none.
OFF_MARGIN = 0.05
# Part of the verdict's key: a change to the measurement makes older verdicts count for nothing.
MEASURE_VERSION = 1


class AttentionChoice(msgspec.Struct, frozen=True, kw_only=True):
    flash: Literal["on", "off"]
    # "measured" (just now), "cache" (an earlier load of this model shape, build and CPU).
    source: Literal["measured", "cache"]
    reason: str


class TurnCosts(msgspec.Struct, frozen=True):
    """ms of one turn (a prompt step and PROMPT_ROWS decode steps) with flash attention on and off."""

    on: float
    off: float


def decide(costs: TurnCosts, source: Literal["measured", "cache"] = "measured") -> AttentionChoice:
    ratio = costs.off / costs.on
    flash: Literal["on", "off"] = "off" if ratio <= 1 - OFF_MARGIN else "on"
    return AttentionChoice(
        flash=flash,
        source=source,
        reason=f"a turn took {costs.on:.0f} ms with it on, {costs.off:.0f} ms off ({ratio:.2f}x)",
    )


def shape_key(model: Model, cpu: str, build: str) -> str:
    """What decides the verdict: the weights' shape and types (not the file: a copy with another chat
    template shares it), the llama.cpp build and the CPU."""
    text = f"{model.description}\n{model.size_bytes}\n{model.n_params}\n{build}\n{cpu}\n{MEASURE_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def measure(model: Model, threads: int) -> TurnCosts:
    """Time one turn with flash attention on and with it off, each on a fresh scratch context."""
    batch = Batch(SEQS * max(HISTORY, PROMPT_ROWS))
    try:
        on, off = (_turn_ms(model, batch, threads, flash) for flash in ("on", "off"))
    finally:
        batch.close()
    return TurnCosts(on=on, off=off)


def _turn_ms(model: Model, batch: Batch, threads: int, flash: str) -> float:
    cells = HISTORY + 2 * PROMPT_ROWS + 64
    ctx = Context(
        model,
        n_ctx=SEQS * cells,
        n_seq=SEQS,
        n_batch=batch.capacity,
        threads=threads,
        flash=flash,
        unified=False,
    )
    try:
        _step(ctx, batch, [(seq, pos) for seq in range(SEQS) for pos in range(HISTORY)])
        prompt, decode = [], []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            _step(ctx, batch, [(seq, HISTORY + r) for seq in range(SEQS) for r in range(PROMPT_ROWS)])
            t1 = time.perf_counter()
            _step(ctx, batch, [(seq, HISTORY + PROMPT_ROWS) for seq in range(SEQS)])
            t2 = time.perf_counter()
            prompt.append(t1 - t0)
            decode.append(t2 - t1)
            for seq in range(SEQS):
                ctx.seq_rm(seq, HISTORY, -1)
        return 1000 * (statistics.median(prompt) + PROMPT_ROWS * statistics.median(decode))
    finally:
        ctx.close()


def _step(ctx: Context, batch: Batch, rows: list[tuple[int, int]]) -> None:
    batch.clear()
    for seq, pos in rows:
        batch.add(1 + (pos * 7 + seq) % 1000, pos, seq, False)
    if ctx.decode(batch) != 0:
        raise RuntimeError("llama_decode failed while timing flash attention")


def cache_path(kernel_cache: Path | None) -> Path | None:
    """The verdicts' file, beside the kernel check's (one cache dir for the machine's verdicts)."""
    return kernel_cache.with_name("flash-attention.json") if kernel_cache else None


def choose_attention(key: str, timer: Callable[[], TurnCosts], cache: VerdictCache[AttentionChoice]) -> AttentionChoice:
    """The remembered verdict for `key` (shape_key), else one timed now with `timer` and remembered."""
    known = cache.get(key)
    if known is not None:
        return AttentionChoice(flash=known.flash, source="cache", reason=known.reason)
    t0 = time.monotonic()
    try:
        costs = timer()
    except RuntimeError as exc:  # a scratch context that cannot be made or decoded: the load goes on
        log.warning("could not time flash attention (%s): leaving it to llama.cpp", exc)
        return AttentionChoice(flash="on", source="measured", reason=f"not timed ({exc}): llama.cpp's default")
    choice = decide(costs)
    log.info(
        "flash attention for split streams: %s (timed in %.1f s: %s)",
        choice.flash,
        time.monotonic() - t0,
        choice.reason,
    )
    cache.put(key, choice)
    return choice
