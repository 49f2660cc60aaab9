"""Shared preambles (specialist and system prompts) saved from the KV cache to host memory, like
llama-server's prompt cache, and restored into a slot instead of being prefilled again.

Why host memory rather than extra resident sequences: every cell in the KV cache costs every later
decode step some attention work, so dozens of resident preambles slowed every token down, while a
saved one costs nothing until it is restored (about 1 ms for 250 tokens of the embedded model).

A preamble is saved from the slot that prefills it, at the step where that slot's sequence holds
exactly the preamble (the scheduler ends a prefill chunk there). So no sequence is ever copied
in part, which a split KV cache could not do.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

from appliance.hive.llama import Context
from appliance.hive.stats import Profile

# Preambles shorter than this are not worth a cache entry.
MIN_CACHE = 16


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Saved:
    """A preamble's KV cells saved in host memory."""

    tokens: list[int]
    state: ctypes.Array
    used: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.state)


class PrefixCache:
    """At most `entries` preambles in at most `max_bytes`, least recently used dropped first."""

    def __init__(self, ctx: Context, *, entries: int, max_bytes: int, profile: Profile) -> None:
        self.ctx = ctx
        self.entries = entries
        self.max_bytes = max_bytes
        self.profile = profile
        self.saved: list[Saved] = []
        self._clock = 0

    def _touch(self, entry: Saved) -> None:
        self._clock += 1
        entry.used = self._clock

    def best(self, prompt: list[int], limit: int) -> tuple[Saved | None, int]:
        """The saved preamble sharing the longest prefix with `prompt` (at most `limit` tokens)."""
        best, length = None, 0
        for entry in self.saved:
            n = min(common_prefix(entry.tokens, prompt), limit)
            if n > length:
                best, length = entry, n
        return best, length

    def restore(self, entry: Saved, seq: int, length: int) -> bool:
        """Put the first `length` tokens of a saved preamble into `seq`; False leaves `seq` empty."""
        t0 = time.perf_counter()
        self.ctx.seq_rm(seq)
        ok = self.ctx.seq_restore(entry.state, seq)
        if ok:
            self.ctx.seq_rm(seq, length, -1)
            self._touch(entry)
        else:
            self.ctx.seq_rm(seq)  # no contiguous room: prefill from scratch instead
        self.profile.restores += 1
        self.profile.restore_s += time.perf_counter() - t0
        return ok

    def wants(self, preamble: list[int]) -> bool:
        """Whether this preamble should be saved: long enough, and not saved already (as itself or
        as the start of a longer entry)."""
        if len(preamble) < MIN_CACHE or self.entries <= 0:
            return False
        n = len(preamble)
        for entry in self.saved:
            if len(entry.tokens) >= n and entry.tokens[:n] == preamble:
                self._touch(entry)
                return False
        return True

    def remember(self, seq: int, kv: list[int]) -> None:
        """Save sequence `seq`, which holds exactly the tokens `kv`, to host memory."""
        if not self.wants(kv):
            return
        t0 = time.perf_counter()
        state = self.ctx.seq_save(seq)
        self.profile.saves += 1
        self.profile.save_s += time.perf_counter() - t0
        if state is None:
            return
        entry = Saved(list(kv), state)
        self._touch(entry)
        self.saved.append(entry)
        while self.saved and (len(self.saved) > self.entries or sum(e.nbytes for e in self.saved) > self.max_bytes):
            self.saved.remove(min(self.saved, key=lambda e: e.used))
