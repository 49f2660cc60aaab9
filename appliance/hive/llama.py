"""Thin, typed wrappers over llama-cpp-python's low-level API (`llama_cpp.llama_cpp`).

The only module that touches ctypes. The high-level `Llama` class decodes into one
sequence only, so the engine drives the C API directly: one model, one context with many
sequences sharing a unified KV cache, a batch, and a sampler chain per request.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os

import llama_cpp as ll
import numpy as np


def quiet_native_logs(verbose: bool = False) -> None:
    """llama.cpp prints every tensor it loads; keep only its errors unless asked."""
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)


def supports_gpu_offload() -> bool:
    return bool(ll.llama_supports_gpu_offload())


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# Types a model can be requantised to (hive/optimize.py): those with batched CPU kernels in ggml.
QUANT_TYPES = {"q4_0": ll.LLAMA_FTYPE_MOSTLY_Q4_0, "q8_0": ll.LLAMA_FTYPE_MOSTLY_Q8_0}


def quantize(source: str, target: str, *, kind: str, threads: int) -> None:
    """Write `source` requantised to `kind` (a QUANT_TYPES key) as `target`, with llama.cpp's
    quantize API; already quantised tensors are requantised (allow_requantize)."""
    ll.llama_backend_init()
    params = ll.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[kind]
    params.allow_requantize = True
    params.nthread = threads
    if ll.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not requantise {source} to {kind}")


class Model:
    def __init__(self, path: str, *, gpu: bool, extra_bufts: bool = True) -> None:
        ll.llama_backend_init()  # idempotent; needed before the first model load
        params = ll.llama_model_default_params()
        # Extra buffer types repack weights for faster CPU kernels (AMX on Xeons); off is what
        # `llama-server --no-repack` does, for CPUs where those kernels crash (see kernels.py).
        params.use_extra_bufts = extra_bufts
        self.gpu_layers = 0
        if gpu and supports_gpu_offload():
            # More layers than any model has: llama.cpp clamps it to "all of them".
            params.n_gpu_layers = 999
            self.gpu_layers = -1
        else:
            params.n_gpu_layers = 0
        self.ptr = ll.llama_model_load_from_file(path.encode(), params)
        if not self.ptr:
            raise RuntimeError(f"llama.cpp could not load the model file {path}")
        self.vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.n_layers = ll.llama_model_n_layer(self.ptr)
        # Bytes of one KV cell (a K and a V row per layer, f16, llama.cpp's default type), for a model
        # whose layers all attend alike; for others it is an estimate (context_size.py, host_pages.py).
        n_head = ll.llama_model_n_head(self.ptr)
        head_dim = ll.llama_model_n_embd(self.ptr) // n_head if n_head > 0 else 0
        self.kv_cell_bytes = 2 * 2 * self.n_layers * head_dim * ll.llama_model_n_head_kv(self.ptr)
        if self.gpu_layers == -1:
            self.gpu_layers = self.n_layers
        self.size_bytes = int(ll.llama_model_size(self.ptr))
        self.ftype = int(ll.llama_model_ftype(self.ptr))
        self.n_params = int(ll.llama_model_n_params(self.ptr))
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.ptr, buf, ctypes.sizeof(buf))
        self.description = buf.value.decode("utf-8", "replace")
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.eos = ll.llama_vocab_eos(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))

    @functools.cached_property
    def eog_ids(self) -> list[int]:
        """Every end-of-generation token (end of turn, end of text, ...), for ignore_eos: a pass over the
        vocabulary (tens of ms), made by the first request that asks, not by every model load."""
        return [t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t)]

    def meta(self, key: str) -> str | None:
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
        if n < 0:
            return None
        if n >= size:  # a long chat template: ask again with room for all of it
            buf = ctypes.create_string_buffer(n + 1)
            ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        arr = (ll.llama_token * n_max)()
        n = ll.llama_tokenize(self.vocab, data, len(data), arr, n_max, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            n_max = -n
            arr = (ll.llama_token * n_max)()
            n = ll.llama_tokenize(self.vocab, data, len(data), arr, n_max, add_special, parse_special)
        return list(arr[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.ptr:
            ll.llama_model_free(self.ptr)
            self.ptr = None


def grammar_error(model: Model, grammar: str) -> str | None:
    """None if llama.cpp compiles this GBNF grammar (root rule "root"), else why not."""
    try:
        sampler = ll.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    except Exception as exc:  # ctypes refuses what it can't pass
        return str(exc)
    if not sampler:
        return "llama.cpp could not parse it (the server log has the parser's message)"
    ll.llama_sampler_free(sampler)
    return None


class Context:
    """One context, many sequences. With a unified KV cache all sequences share one pool of cells,
    so a prefix is shared by tagging cells and one request may use every cell; split, each sequence
    has its own stream of n_ctx / n_seq cells, so attention never walks other sequences' cells, and
    a copy between sequences copies a whole stream."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int,
        threads: int,
        flash: str,
        unified: bool = True,
    ) -> None:
        params = ll.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = unified
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        # llama_flash_attn_type: -1 auto (llama.cpp decides per backend), 0 off, 1 on.
        params.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[flash]
        self.ptr = ll.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self.mem = ll.llama_get_memory(self.ptr)
        self.n_ctx = ll.llama_n_ctx(self.ptr)
        # Cells one sequence may use: all of them when unified, its own stream's when split.
        self.n_ctx_seq = ll.llama_n_ctx_seq(self.ptr)
        self.unified = unified
        self.n_batch = n_batch

    def decode(self, batch: Batch) -> int:
        return int(ll.llama_decode(self.ptr, batch.raw))

    def set_threads(self, n: int) -> None:
        ll.llama_set_n_threads(self.ptr, n, n)

    def logits(self, index: int, n_vocab: int) -> list[float]:
        """A copy of the logits row at batch `index` (for checks; the sampler reads them in place)."""
        ptr = ll.llama_get_logits_ith(self.ptr, index)
        return list(ptr[:n_vocab])

    def output_logits(self, n: int, n_vocab: int) -> np.ndarray:
        """A copy of the logits rows of the last decode's `n` outputs, in batch order."""
        return np.ctypeslib.as_array(ll.llama_get_logits(self.ptr), shape=(n, n_vocab)).copy()

    def logprobs(self, index: int, n_vocab: int, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
        """`token`'s log-probability at batch `index` and the `top` most likely (id, logprob) pairs,
        from the raw logits (the model's own distribution), read in place with numpy."""
        row = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ptr, index), shape=(n_vocab,))
        peak = float(row.max())
        log_total = peak + math.log(float(np.exp(row - peak).sum()))
        best: list[tuple[int, float]] = []
        if top > 0:
            ids = np.argpartition(row, -top)[-top:]
            ids = ids[np.argsort(row[ids])[::-1]]
            best = [(int(i), float(row[i]) - log_total) for i in ids]
        return float(row[token]) - log_total, best

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(ll.llama_memory_seq_rm(self.mem, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        ll.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def copy_prefix(self, src: int, dst: int, n: int) -> bool:
        """`dst` becomes the first `n` tokens of `src`; False leaves `dst` empty. Unified: cells
        tagged, nothing moves. Split: through host memory, src's cells only (llama.cpp's own copy
        between streams copies whole streams, every cell of a stream that may be the model's whole
        context, and commits all of the destination's memory), then cut back to `n`."""
        return self.copy_prefix_to(src, [dst], n)[0]

    def copy_prefix_to(self, src: int, dsts: list[int], n: int) -> list[bool]:
        """copy_prefix into several sequences, reading `src` once."""
        for dst in dsts:
            self.seq_rm(dst)
        if self.unified:
            for dst in dsts:
                self.seq_cp(src, dst, 0, n)
            return [True] * len(dsts)
        state = self.seq_save(src)
        done = []
        for dst in dsts:
            ok = state is not None and self.seq_restore(state, dst)
            self.seq_rm(dst, n if ok else 0, -1)
            done.append(ok)
        return done

    def clear(self) -> None:
        # Cells freed, data left: a freed cell is never read, and clearing the data would commit
        # the whole KV cache's memory again (host_pages.py).
        ll.llama_memory_clear(self.mem, False)

    def seq_bytes(self, seq: int) -> int:
        """What seq_save would write for `seq`, without writing it."""
        return ll.llama_state_seq_get_size(self.ptr, seq)

    def seq_save(self, seq: int) -> ctypes.Array | None:
        """A copy of one sequence's KV cells in host memory (None if llama.cpp could not write it)."""
        size = self.seq_bytes(seq)
        if size <= 0:
            return None
        buf = (ctypes.c_uint8 * size)()
        return buf if ll.llama_state_seq_get_data(self.ptr, buf, size, seq) == size else None

    def seq_restore(self, state: ctypes.Array, seq: int) -> bool:
        """Put a saved sequence back, as `seq`; False when the KV cache has no room for it."""
        return ll.llama_state_seq_set_data(self.ptr, state, len(state), seq) > 0

    def close(self) -> None:
        if self.ptr:
            ll.llama_free(self.ptr)
            self.ptr = None


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = ll.llama_batch_init(capacity, 0, 1)
        self.n = 0
        # Batch index -> row among the decode's outputs (llama.cpp keeps outputs in batch order).
        self.output_row: dict[int, int] = {}

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0
        self.output_row = {}

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (where its logits will be)."""
        i = self.n
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq
        raw.logits[i] = logits
        if logits:
            self.output_row[i] = len(self.output_row)
        self.n = i + 1
        raw.n_tokens = self.n
        return i

    def close(self) -> None:
        ll.llama_batch_free(self.raw)


class StepLogits:
    """The logits rows of the last decode's outputs, read in place, with the argmax of every row
    found in one numpy call the first time a greedy pick asks: a ctypes call and a numpy wrapper
    per row were most of a greedy step's sampling time. Valid until the next decode."""

    def __init__(self, ctx: Context, batch: Batch, n_vocab: int) -> None:
        self.ctx = ctx
        self.rows = batch.output_row
        self.n_vocab = n_vocab
        self._view: np.ndarray | None = None
        self._best: np.ndarray | None = None

    @property
    def view(self) -> np.ndarray:
        if self._view is None:
            shape = (len(self.rows), self.n_vocab)
            self._view = np.ctypeslib.as_array(ll.llama_get_logits(self.ctx.ptr), shape=shape)
        return self._view

    def row(self, index: int) -> np.ndarray:
        """The logits row of batch `index` (llama.cpp's own buffer)."""
        return self.view[self.rows[index]]

    def best(self, index: int) -> int:
        """The first highest logit of batch `index`'s row, before any logit bias."""
        if self._best is None:
            self._best = self.view.argmax(axis=1)
        return int(self._best[self.rows[index]])


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
    vocabulary and the pick made again. Applying a grammar to 49k candidates costs 20-30 ms here, a
    check of one token almost nothing, and most picks pass."""

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
    ) -> None:
        self.ptr = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
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
        # Greedy with nothing but a logit bias in the chain: an argmax over the logits row in place
        # (about 10 us), where llama_sampler_sample first copies the whole vocabulary into candidates
        # (about 60 us).
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
