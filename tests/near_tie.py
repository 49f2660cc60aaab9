"""Comparing two greedy generations of one prompt on the real model: the same tokens, or parted
where the model's top two choices were nearly tied (batch composition changes llama.cpp's float
rounding, so runs of one prompt in different company may part there and only there)."""

from __future__ import annotations

from appliance.hive.engine import HiveEngine
from appliance.hive.types import Finished

# Two runs may part where the top two logits are this close. A clear choice (a bigger gap) must never differ.
NEAR_TIE = 0.5


def top_two_gap(model_path: str, tokens: list[int], *, fast_kernels: bool, gpu: bool = False) -> float:
    """Gap between the two best next-token logits after `tokens`, from a plain one-sequence run
    on the engine's device, with the CPU kernels the engine chose (llama-cpp-python's `Llama` would
    take the fast ones, which crash on some Xeons with AMX: SIGSEGV, the whole test run with it)."""
    from appliance.hive.llama import Batch, Context, Model

    model = Model(model_path, gpu=gpu, extra_bufts=fast_kernels)
    ctx = Context(model, n_ctx=2048, n_seq=1, n_batch=2048, threads=2, flash="auto")
    batch = Batch(len(tokens))
    try:
        for pos, token in enumerate(tokens):
            batch.add(token, pos, 0, logits=pos == len(tokens) - 1)
        assert ctx.decode(batch) == 0
        row = sorted(ctx.logits(len(tokens) - 1, model.n_vocab), reverse=True)
        return float(row[0] - row[1])
    finally:
        batch.close()
        ctx.close()
        model.close()


def assert_same_or_near_tie(engine: HiveEngine, prompt_tokens: list[int], a: Finished, b: Finished) -> None:
    if a.tokens == b.tokens:
        return
    k = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens, strict=False)) if x != y), None)
    if k is None:  # one is a prefix of the other: they parted on the end-of-generation token
        k = min(len(a.tokens), len(b.tokens))
    status = engine.status()
    # On a GPU the reference runs there too, in the arithmetic that parted the answers (on an H200 a
    # solo and a batched answer parted where the CPU's top two were 0.61 apart; not run there since).
    gap = top_two_gap(
        engine.config.model_path,
        prompt_tokens + a.tokens[:k],
        fast_kernels=status.cpu_kernels == "fast",
        gpu=status.gpu_layers > 0,
    )
    assert gap < NEAR_TIE, f"generations parted at token {k} on a clear choice (logit gap {gap:.3f})"
