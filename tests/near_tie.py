"""Comparing two greedy generations of one prompt on the real model: the same tokens, or parted
where the model's top two choices were nearly tied (batch composition changes llama.cpp's float
rounding, so runs of one prompt in different company may part there and only there).

How near is near depends on the arithmetic. The engine prefills several requests' prompts in one
batch and decodes them a row each per step, and the company a sequence keeps changes the rounding
of its own logits (attention over more cells, matmuls over more rows): on a 2-core Xeon's CPU the top
two logits of one prompt moved by 0.2-0.4 between alone and beside three others, and on an H200 a
solo and a batched answer parted where the top two were 0.64 and 0.98 apart. So where two answers
part on a gap of NEAR_TIE or more, the reference measures on the engine's device how far company
alone moves the top two logits there (`arrangement_drift`) and lets them part under 3x that. It
decodes with llama.cpp directly, not through the engine, so the drift it measures is llama.cpp's
arithmetic and cannot be inflated by a leak between the engine's sequences; a leak that changes an
answer moves logits by far more than rounding does."""

from __future__ import annotations

import numpy as np

from appliance.engine.engine import HiveEngine
from appliance.engine.interface import Finished
from appliance.engine.native.llama import Batch, Context, Model

# Two runs may part where the top two logits are this close. A clear choice (a bigger gap) must never differ.
NEAR_TIE = 0.5
# Sequences decoding beside the one measured, as in a batched run.
COMPANY = 3


def _reference(model_path: str, *, fast_kernels: bool, gpu: bool, n_seq: int) -> tuple[Model, Context, Batch]:

    model = Model(model_path, gpu=gpu, extra_bufts=fast_kernels)
    ctx = Context(model, n_ctx=2048 * n_seq, n_seq=n_seq, n_batch=2048, threads=2, flash="auto")
    return model, ctx, Batch(2048)


def _close(*things: Model | Context | Batch) -> None:
    for thing in reversed(things):
        thing.close()


def _one_prefill(model_path: str, tokens: list[int], *, fast_kernels: bool, gpu: bool) -> np.ndarray:
    """The logits after `tokens`, all of them decoded in one batch of one sequence."""
    model, ctx, batch = _reference(model_path, fast_kernels=fast_kernels, gpu=gpu, n_seq=1)
    try:
        for pos, token in enumerate(tokens):
            batch.add(token, pos, 0, logits=pos == len(tokens) - 1)
        assert ctx.decode(batch) == 0
        return np.array(ctx.logits(len(tokens) - 1, model.n_vocab))
    finally:
        _close(model, ctx, batch)


def _stepped(
    model_path: str, prompt: list[int], answer: list[int], *, fast_kernels: bool, gpu: bool, n_seq: int
) -> np.ndarray:
    """The logits after prompt + answer, as the engine makes them: the prompt prefilled (in one
    batch with n_seq - 1 others), then the answer fed one token a step, each step a row per sequence."""
    model, ctx, batch = _reference(model_path, fast_kernels=fast_kernels, gpu=gpu, n_seq=n_seq)
    try:
        for seq in range(n_seq):
            for pos, token in enumerate(prompt):
                batch.add(token, pos, seq, logits=seq == 0 and pos == len(prompt) - 1 and not answer)
        assert ctx.decode(batch) == 0
        for i, token in enumerate(answer):
            batch.clear()
            for seq in range(n_seq):
                batch.add(token, len(prompt) + i, seq, logits=seq == 0 and i == len(answer) - 1)
            assert ctx.decode(batch) == 0
        # seq 0's row: the first of the last step, or its prompt's last in the prefill
        return np.array(ctx.logits(0 if answer else len(prompt) - 1, model.n_vocab))
    finally:
        _close(model, ctx, batch)


def top_two_gap(model_path: str, tokens: list[int], *, fast_kernels: bool, gpu: bool = False) -> float:
    """Gap between the two best next-token logits after `tokens`, from a plain one-sequence run
    on the engine's device, with the CPU kernels the engine chose (llama-cpp-python's `Llama` would
    take the fast ones, which crash on some Xeons with AMX: SIGSEGV, the whole test run with it)."""
    row = np.sort(_one_prefill(model_path, tokens, fast_kernels=fast_kernels, gpu=gpu))[::-1]
    return float(row[0] - row[1])


def arrangement_drift(
    model_path: str, prompt: list[int], answer: list[int], *, fast_kernels: bool, gpu: bool = False
) -> float:
    """How far company alone moves the top two logits after prompt + answer, on the engine's
    device: the prompt prefilled and the answer fed a token a step (the engine's way), once alone
    and once beside COMPANY sequences doing the same in the same batches, compared at the two tokens
    a plain prefill of it all ranks first."""
    reference = _one_prefill(model_path, prompt + answer, fast_kernels=fast_kernels, gpu=gpu)
    top = np.argsort(reference)[::-1][:2]
    where = {"fast_kernels": fast_kernels, "gpu": gpu}
    alone = _stepped(model_path, prompt, answer, n_seq=1, **where)
    beside = _stepped(model_path, prompt, answer, n_seq=1 + COMPANY, **where)
    return float(np.abs(alone[top] - beside[top]).max())


def near_tie_bound(drift: float) -> float:
    """Where two runs may part: below NEAR_TIE, or below twice the drift (each of the top two
    logits moved by up to `drift` closes the gap by up to twice that), with a margin, since the
    engine's batches are not exactly the reference's."""
    return max(NEAR_TIE, 3 * drift)


def assert_same_or_near_tie(engine: HiveEngine, prompt_tokens: list[int], a: Finished, b: Finished) -> None:
    if a.tokens == b.tokens:
        return
    k = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens, strict=False)) if x != y), None)
    if k is None:  # one is a prefix of the other: they parted on the end-of-generation token
        k = min(len(a.tokens), len(b.tokens))
    status = engine.status()
    # The reference runs on the engine's device, in the arithmetic that parted the answers.
    where = {"fast_kernels": status.cpu.kernels == "fast", "gpu": status.model.gpu_layers > 0}
    path = engine.config.model_path
    gap = top_two_gap(path, prompt_tokens + a.tokens[:k], **where)
    if gap < NEAR_TIE:
        return
    drift = arrangement_drift(path, prompt_tokens, a.tokens[:k], **where)
    bound = near_tie_bound(drift)
    assert gap < bound, (
        f"generations parted at token {k} on a clear choice (logit gap {gap:.3f}; a batch's company moves "
        f"the top two by up to {drift:.3f} on this device, so only gaps under {bound:.3f} may part)"
    )
