"""Thin, typed wrappers over llama-cpp-python's low-level API (`llama_cpp.llama_cpp`).

With sampling.py, the only modules that call it. The high-level `Llama` class decodes into one
sequence only, so the engine drives the C API directly: one model, one context with many
sequences (in one unified KV cache or a stream each), a batch, and the step's logits
(sampling.py: a sampler chain per request).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
from pathlib import Path

import llama_cpp as ll
import numpy as np

from appliance.engine.native.native_libs import check_native_libraries


def quiet_native_logs(verbose: bool = False) -> None:
    """llama.cpp prints every tensor it loads; keep only its errors unless asked."""
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)


def supports_gpu_offload() -> bool:
    return bool(ll.llama_supports_gpu_offload())


def library_dir() -> Path:
    """The folder of the libllama that llama-cpp-python loaded (its LLAMA_CPP_LIB_PATH included)."""
    return Path(ll.llama_cpp._lib._name).parent


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


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def row_logprobs(row: np.ndarray, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """`token`'s log-probability under the logits `row` and the `top` most likely (id, logprob)
    pairs; a logit of -inf (a token a grammar forbids) has no probability and is never listed."""
    peak = float(row.max())
    log_total = peak + math.log(float(np.exp(row - peak).sum()))
    best: list[tuple[int, float]] = []
    if top > 0:
        ids = np.argpartition(row, -top)[-top:]
        ids = ids[np.argsort(row[ids])[::-1]]
        best = [(int(i), float(row[i]) - log_total) for i in ids if row[i] != -math.inf]
    return float(row[token]) - log_total, best


class Model:
    def __init__(self, path: str, *, gpu: bool, extra_bufts: bool = False, vocab_only: bool = False) -> None:
        check_native_libraries(library_dir())  # a build that would crash in the load is refused
        ll.llama_backend_init()  # idempotent; needed before the first model load
        params = ll.llama_model_default_params()
        # The metadata and vocabulary alone (no weights): a fraction of a second, for checks before a load.
        params.vocab_only = vocab_only
        # Extra buffer types repack weights for faster CPU kernels (AMX on Xeons); off is what
        # `llama-server --no-repack` does, for CPUs where those kernels crash (see kernels.py). Off
        # unless asked: only a caller that ran the kernel check may ask (a test that loaded the model
        # with them on killed the whole test run on a Xeon with AMX).
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
        self.bos = ll.llama_vocab_bos(self.vocab)
        self.eos = ll.llama_vocab_eos(self.vocab)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        # Token texts and end-of-generation answers asked for so far (special texts under ~token): at most
        # two entries per vocabulary entry.
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        if vocab_only:  # the layers' parameters are not loaded (llama.cpp aborts if asked for them)
            return
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.n_layers = ll.llama_model_n_layer(self.ptr)
        # Bytes of one KV cell (a K and a V row per layer, f16, llama.cpp's default type), for a model
        # whose layers all attend alike; for others it is an estimate (context_size.py, host_pages.py).
        n_head = ll.llama_model_n_head(self.ptr)
        head_dim = ll.llama_model_n_embd(self.ptr) // n_head if n_head > 0 else 0
        # A model may state its heads' widths (Gemma 3: 256, not n_embd / n_head = 160).
        arch = self.meta("general.architecture") or ""
        k_dim, v_dim = (_int(self.meta(f"{arch}.attention.{w}_length")) or head_dim for w in ("key", "value"))
        self.kv_cell_bytes = 2 * self.n_layers * (k_dim + v_dim) * ll.llama_model_n_head_kv(self.ptr)
        if self.gpu_layers == -1:
            self.gpu_layers = self.n_layers
        self.size_bytes = int(ll.llama_model_size(self.ptr))
        self.ftype = int(ll.llama_model_ftype(self.ptr))
        self.n_params = int(ll.llama_model_n_params(self.ptr))
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.ptr, buf, ctypes.sizeof(buf))
        self.description = buf.value.decode("utf-8", "replace")

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
        """The token's text as bytes; remembered, since the scheduler asks for one every token of every
        row and a piece never changes."""
        key = token if not special else ~token
        known = self._pieces.get(key)
        if known is None:
            known = self._pieces[key] = self._piece(token, special)
        return known

    def _piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(ll.llama_vocab_is_eog(self.vocab, token))
        return eog

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


def kv_cells(n_ctx: int, n_seq: int, *, unified: bool) -> int:
    """The cells llama.cpp gives a context asked for `n_ctx` (llama-context.cpp pads the context,
    and split, each sequence's stream, to 256 cells)."""
    pad = lambda n: -(-n // 256) * 256  # noqa: E731
    n_ctx = pad(n_ctx)
    return n_ctx if unified else n_seq * pad(n_ctx // n_seq)


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
        self._logits_key: tuple[int, int, int] | None = None
        self._logits = np.zeros((0, 0), dtype=np.float32)

    def decode(self, batch: Batch) -> int:
        return int(ll.llama_decode(self.ptr, batch.raw))

    def logits_view(self, rows: int, n_vocab: int) -> np.ndarray:
        """The last decode's output logits as a (rows, n_vocab) array over llama.cpp's own buffer.
        The wrapper is kept while the buffer stays where it is: making one costs more than a greedy
        pick (numpy builds a ctypes array type each time)."""
        logits = ll.llama_get_logits(self.ptr)
        key = (ctypes.cast(logits, ctypes.c_void_p).value or 0, rows, n_vocab)
        if self._logits_key != key:
            self._logits = np.ctypeslib.as_array(logits, shape=(rows, n_vocab))
            self._logits_key = key
        return self._logits

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
        return row_logprobs(
            np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ptr, index), shape=(n_vocab,)), token, top
        )

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

    def seq_save(self, seq: int, size: int | None = None) -> ctypes.Array | None:
        """A copy of one sequence's KV cells in host memory (None if llama.cpp could not write it);
        `size`: seq_bytes(seq), where the caller has it already (llama.cpp walks the cells for it)."""
        size = self.seq_bytes(seq) if size is None else size
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
            self._view = self.ctx.logits_view(len(self.rows), self.n_vocab)
        return self._view

    def row(self, index: int) -> np.ndarray:
        """The logits row of batch `index` (llama.cpp's own buffer)."""
        return self.view[self.rows[index]]

    def best(self, index: int) -> int:
        """The first highest logit of batch `index`'s row, before any logit bias."""
        if self._best is None:
            self._best = self.view.argmax(axis=1)
        return int(self._best[self.rows[index]])
