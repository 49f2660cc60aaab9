"""Plain greedy sampling reads the argmax of the logits row in place instead of going through
llama.cpp's sampler chain; it must pick exactly what the chain's greedy sampler picks, in both KV
cache layouts (split streams change how llama.cpp orders work, never which row is which)."""

from __future__ import annotations

import pytest

from appliance.engine import sampling
from appliance.engine.engine import embedded_model_path
from appliance.engine.native import llama

GREEDY = dict(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0, frequency_penalty=0.0, seed=1)


@pytest.mark.parametrize("unified", [True, False])
def test_argmax_picks_what_the_greedy_chain_picks(unified: bool) -> None:
    model = llama.Model(embedded_model_path(), gpu=False)
    ctx = llama.Context(model, n_ctx=1024, n_seq=4, n_batch=256, threads=2, flash="auto", unified=unified)
    batch = llama.Batch(256)
    try:
        texts = ["The capital of France is", "def fibonacci(n):", "Bees make honey because", "1, 2, 3, 4,"]
        rows = []
        for seq, text in enumerate(texts):
            tokens = model.tokenize(text, add_special=True, parse_special=False)
            for pos, tok in enumerate(tokens):
                idx = batch.add(tok, pos, seq, True)  # every position's row: many different choices
                rows.append(idx)
        assert ctx.decode(batch) == 0
        fast = sampling.Sampler(model, repeat_penalty=1.0, grammar=None, **GREEDY)
        chain = sampling.Sampler(model, repeat_penalty=1.0, grammar=None, **GREEDY)
        chain.argmax_only = False  # through llama_sampler_sample, as before the shortcut
        assert fast.argmax_only
        # The step's rows read at once (every row's argmax in one call), as the scheduler reads them.
        step = llama.StepLogits(ctx, batch, model.n_vocab)
        picks = [(fast.sample(ctx, i, step), chain.sample(ctx, i, step)) for i in rows]
        assert all(a == b for a, b in picks), picks
        assert len({a for a, _ in picks}) > 5
        # With a logit bias: the favourite banned, and a token pushed up from the middle of the pack.
        row = ctx.logits(rows[3], model.n_vocab)
        order = sorted(range(model.n_vocab), key=lambda t: -row[t])
        for bias in ({order[0]: -100.0}, {order[0]: -100.0, order[40]: row[order[0]] - row[order[40]] + 1.0}):
            fast_b = sampling.Sampler(model, repeat_penalty=1.0, grammar=None, logit_bias=bias, **GREEDY)
            chain_b = sampling.Sampler(model, repeat_penalty=1.0, grammar=None, logit_bias=bias, **GREEDY)
            chain_b.argmax_only = False
            assert fast_b.argmax_only
            for i in rows:
                assert fast_b.sample(ctx, i, step) == chain_b.sample(ctx, i, step)
            assert ctx.logits(rows[3], model.n_vocab) == row  # llama.cpp's buffer is left as it was
            fast_b.close()
            chain_b.close()
        # Anything else in the chain (here a repeat penalty) takes the chain's path.
        penalised = sampling.Sampler(model, repeat_penalty=1.1, grammar=None, **GREEDY)
        assert not penalised.argmax_only
        for sampler in (fast, chain, penalised):
            sampler.close()
    finally:
        batch.close()
        ctx.close()
        model.close()
