"""Per-request sampling over llama-cpp-python's sampler API: the logit bias, penalties, greedy or
top-k/top-p/min-p/temperature, and grammars (llama.py wraps the model, context and batch)."""

from __future__ import annotations

import ctypes
import math
import random

import llama_cpp as ll
import numpy as np

from appliance.engine.interface import SamplingParams, TokenInfo
from appliance.engine.native.llama import Context, Model, StepLogits, row_logprobs

# Candidates a greedy pick refused by the grammar tries one by one before the grammar goes over
# the whole vocabulary.
GREEDY_TRIES = 32
# llama_token_data as numpy sees it, to fill a candidates array from a logits row without a Python loop.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Candidates:
    """A reusable llama_token_data_array over the whole vocabulary."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.data = (ll.llama_token_data * n_vocab)()
        self.view = np.frombuffer(self.data, dtype=_TOKEN_DATA)
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.array = ll.llama_token_data_array(self.data, n_vocab, -1, False)
        self.one = (ll.llama_token_data * 1)()
        self.one_array = ll.llama_token_data_array(self.one, 1, -1, False)

    def fill(self, ctx: Context, index: int) -> object:
        row = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx.ptr, index), shape=(self.n_vocab,))
        self.view["id"] = self.ids
        self.view["logit"] = row
        self.view["p"] = 0.0
        self.array.size, self.array.selected, self.array.sorted = self.n_vocab, -1, False
        return ctypes.byref(self.array)

    def selected(self) -> int:
        return int(self.data[self.array.selected].id)

    def best_allowed(self, grammar: ctypes.c_void_p, k: int) -> int | None:
        """For greedy sampling: the most likely of the chain's top `k` candidates that the grammar
        accepts (exactly the greedy pick under the grammar when one is there), or None."""
        size = self.array.size
        logits = self.view["logit"][:size]
        k = min(k, size)
        top = np.argpartition(-logits, k - 1)[:k]
        for i in top[np.argsort(-logits[top])]:
            if logits[i] == -np.inf:
                return None
            token = int(self.view["id"][i])
            if self.allows(grammar, token):
                return token
        return None

    def allows(self, grammar: ctypes.c_void_p, token: int) -> bool:
        """Whether the grammar accepts `token` next (it sets a forbidden token's logit to -inf)."""
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 0.0, 0.0
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        ll.llama_sampler_apply(grammar, ctypes.byref(self.one_array))
        return self.one[0].logit != -math.inf


class Sampler:
    """A per-request sampler: logit bias, penalties, then greedy or top-k/top-p/min-p/temperature;
    and a grammar, checked the way llama.cpp's common sampler does it: the chain picks a token from
    the raw candidates, and only if the grammar rejects it is the grammar applied to the whole
    vocabulary and the pick made again. Applying a grammar to the whole vocabulary costs more than a
    one-token decode step, a check of one token almost nothing, and most picks pass
    (docs/decisions/006-step-shape.md)."""

    def __init__(
        self,
        model: Model,
        *,
        temperature: float,
        top_p: float,
        top_k: int,
        min_p: float,
        presence_penalty: float,
        frequency_penalty: float,
        repeat_penalty: float,
        seed: int,
        grammar: str | None,
        logit_bias: dict[int, float] | None = None,
        logprobs: bool = False,
    ) -> None:
        self.ptr = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        # With a grammar and log-probabilities asked for: the logits of the last pick after the
        # grammar's constraint (forbidden tokens at -inf), the distribution the token came from.
        self.constrained = bool(grammar) and logprobs
        self.constrained_row: np.ndarray | None = None
        add = ll.llama_sampler_chain_add
        if logit_bias:
            # First in the chain, so a banned token (-100, as OpenAI defines it: -inf here) can't
            # come back through the grammar or greedy pick.
            biases = (ll.llama_logit_bias * len(logit_bias))()
            for i, (token, bias) in enumerate(sorted(logit_bias.items())):
                biases[i].token = token
                biases[i].bias = -math.inf if bias <= -100 else bias
            add(self.ptr, ll.llama_sampler_init_logit_bias(model.n_vocab, len(logit_bias), biases))
        self.grammar = None
        self.candidates: Candidates | None = None
        if grammar:
            self.grammar = ll.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not self.grammar:
                ll.llama_sampler_free(self.ptr)
                self.ptr = None
                raise ValueError("the grammar could not be parsed")
            self.candidates = Candidates(model.n_vocab)
        if presence_penalty or frequency_penalty or repeat_penalty != 1.0:
            add(
                self.ptr,
                ll.llama_sampler_init_penalties(model.n_vocab, 64, repeat_penalty, frequency_penalty, presence_penalty),
            )
        self.greedy = temperature <= 0
        # The logit bias for the argmax below: token ids, sorted, and what is added to their logits.
        biased = sorted((logit_bias or {}).items())
        self.bias_ids = np.array([t for t, _ in biased], dtype=np.int64)
        self.bias = np.array([-math.inf if b <= -100 else b for _, b in biased], dtype=np.float32)
        self.bias_set = frozenset(t for t, _ in biased)
        # Greedy with nothing but a logit bias in the chain: an argmax over the logits row in place,
        # where llama_sampler_sample would first copy the whole vocabulary into candidates
        # (docs/decisions/006-step-shape.md).
        self.n_vocab = model.n_vocab
        self.argmax_only = (
            self.greedy and not grammar and not (presence_penalty or frequency_penalty or repeat_penalty != 1.0)
        )
        if temperature <= 0:
            add(self.ptr, ll.llama_sampler_init_greedy())
            return
        if top_k > 0:
            add(self.ptr, ll.llama_sampler_init_top_k(top_k))
        if top_p < 1.0:
            add(self.ptr, ll.llama_sampler_init_top_p(top_p, 1))
        if min_p > 0:
            add(self.ptr, ll.llama_sampler_init_min_p(min_p, 1))
        add(self.ptr, ll.llama_sampler_init_temp(temperature))
        add(self.ptr, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: Context, index: int, logits: StepLogits) -> int:
        """Sample from the logits at batch `index`; the chain (and grammar) also accept the token.
        `logits`: the step's rows, whose argmaxes a greedy pick reads (found for all rows at once)."""
        if self.argmax_only:
            return self._argmax(logits.row(index), logits.best(index))
        if self.grammar is None:
            return int(ll.llama_sampler_sample(self.ptr, ctx.ptr, index))
        cand = self.candidates
        assert cand is not None
        if self.constrained:  # the grammar over the whole vocabulary first, to keep what it leaves
            cur = cand.fill(ctx, index)
            ll.llama_sampler_apply(self.grammar, cur)
            self.constrained_row = cand.view["logit"].copy()
            ll.llama_sampler_apply(self.ptr, cur)
            token = cand.selected()
            ll.llama_sampler_accept(self.grammar, token)
            ll.llama_sampler_accept(self.ptr, token)
            return token
        ll.llama_sampler_apply(self.ptr, cand.fill(ctx, index))
        token = cand.selected()
        if not cand.allows(self.grammar, token):
            # Greedy: the best allowed token is usually among the next few (checked one by one);
            # otherwise, or when sampling, the grammar goes over the whole vocabulary.
            best = cand.best_allowed(self.grammar, GREEDY_TRIES) if self.greedy else None
            if best is not None:
                token = best
            else:
                cur = cand.fill(ctx, index)
                ll.llama_sampler_apply(self.grammar, cur)
                ll.llama_sampler_apply(self.ptr, cur)
                token = cand.selected()
        ll.llama_sampler_accept(self.grammar, token)
        ll.llama_sampler_accept(self.ptr, token)
        return token

    def _argmax(self, row: np.ndarray, best: int) -> int:
        """The first highest logit after the logit bias, as llama.cpp's greedy sampler picks it, given
        `best`, the row's plain argmax (the step finds it for every row at once). The row is
        llama.cpp's own buffer, which log-probabilities read later: when the biased entries must be
        masked for the argmax, they are put back."""
        ids = self.bias_ids
        if not len(ids):
            return best
        raw = row[ids]  # a copy (fancy indexing)
        if best in self.bias_set:
            row[ids] = -math.inf
            best = int(row.argmax())
            row[ids] = raw
        # (Otherwise the row's first highest logit is unbiased, so it is the first highest unbiased one.)
        biased = raw + self.bias
        j = int(biased.argmax())  # ids are sorted, so the first of equals is the lowest id
        if biased[j] > row[best] or (biased[j] == row[best] and ids[j] < best):
            return int(ids[j])
        return best

    def close(self) -> None:
        if self.ptr:
            ll.llama_sampler_free(self.ptr)
            self.ptr = None
        if self.grammar:
            ll.llama_sampler_free(self.grammar)
            self.grammar = None


def request_sampler(model: Model, s: SamplingParams, choice: int) -> Sampler:
    """The sampler for one choice of a request; ValueError for a grammar llama.cpp refuses."""
    # With a seed, sibling choices get seed, seed+1, ... so they differ yet repeat run to run.
    seed = s.seed + choice if s.seed is not None else random.getrandbits(32)
    bias = {**s.logit_bias, **dict.fromkeys(model.eog_ids, -100.0)} if s.ignore_eos else s.logit_bias
    return Sampler(
        model,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        min_p=s.min_p,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        repeat_penalty=s.repeat_penalty,
        seed=seed,
        grammar=s.grammar,
        logit_bias=bias,
        logprobs=s.logprobs is not None,
    )


def token_info(sampler: Sampler, ctx: Context, model: Model, token: int, piece: bytes, row: int, top: int) -> TokenInfo:
    """A sampled token with its log-probability and the `top` most likely, from the step's logits row,
    or under a grammar the distribution after its constraint."""
    constrained = sampler.constrained_row
    if constrained is not None:
        logprob, best = row_logprobs(constrained, token, top)
    else:
        logprob, best = ctx.logprobs(row, model.n_vocab, token, top)
    return TokenInfo(token, piece, logprob, [(t, model.piece(t), lp) for t, lp in best])
