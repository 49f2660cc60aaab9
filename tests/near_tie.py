"""Comparing two greedy generations of one prompt on the real model: the same tokens, or parted
where the model's top two choices were nearly tied (batch composition changes llama.cpp's float
rounding, so runs of one prompt in different company may part there and only there)."""

from __future__ import annotations

from appliance.hive.engine import HiveEngine
from appliance.hive.types import Finished

# Two runs may part where the top two logits are this close. A clear choice (a bigger gap) must never differ.
NEAR_TIE = 0.5


def top_two_gap(model_path: str, tokens: list[int]) -> float:
    """Gap between the two best next-token logits after `tokens`, from a plain one-sequence run."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, n_ctx=2048, n_threads=2, verbose=False)
    llm.eval(tokens)
    row = sorted(llm.scores[llm.n_tokens - 1], reverse=True)
    return float(row[0] - row[1])


def assert_same_or_near_tie(engine: HiveEngine, prompt_tokens: list[int], a: Finished, b: Finished) -> None:
    if a.tokens == b.tokens:
        return
    k = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens, strict=False)) if x != y), None)
    if k is None:  # one is a prefix of the other: they parted on the end-of-generation token
        k = min(len(a.tokens), len(b.tokens))
    gap = top_two_gap(engine.config.model_path, prompt_tokens + a.tokens[:k])
    assert gap < NEAR_TIE, f"generations parted at token {k} on a clear choice (logit gap {gap:.3f})"
