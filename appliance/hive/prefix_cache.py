"""Shared preambles (specialist and system prompts) saved from the KV cache to host memory, like
llama-server's prompt cache, and restored into a slot instead of being prefilled again. Also the
conversations that idle slots held when a new request takes their slot: a chat's next turn
restores its whole history (prompt and answer) rather than prefilling it again.

Why host memory rather than extra resident sequences: every cell in the KV cache costs every later
decode step some attention work, so dozens of resident preambles slowed every token down, while a
saved one costs nothing until it is restored (about 1 ms for 250 tokens of the embedded model).

A preamble is saved from the slot that prefills it, at the step where that slot's sequence holds
exactly the preamble (the scheduler ends a prefill chunk there). So no sequence is ever copied
in part, which a split KV cache could not do.

Preambles serve many requests, a conversation one caller: conversations are dropped first, and
only they make room for each other, so a stream of one-off requests never pushes out a preamble.
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
    # A slot's whole history (one caller's), not a shared preamble: the first to be dropped.
    conversation: bool = False

    @property
    def nbytes(self) -> int:
        return len(self.state)


class PrefixCache:
    """At most `entries` preambles and as many conversations in at most `max_bytes`, least recently
    used dropped first."""

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
        """The saved entry sharing the longest prefix with `prompt` (at most `limit` tokens); the
        shortest of those, since a restore copies the whole entry."""
        best, length = None, 0
        for entry in self.saved:
            n = min(common_prefix(entry.tokens, prompt), limit)
            if n > length or (n == length and best is not None and len(entry.tokens) < len(best.tokens)):
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

    def wants(self, tokens: list[int], *, conversation: bool = False) -> bool:
        """Whether these tokens should be saved: long enough, and not saved already, as themselves or
        as the start of a longer entry. A preamble inside a saved conversation is still saved as a
        preamble: the conversation goes first, and restoring it would copy the whole chat."""
        if len(tokens) < MIN_CACHE or self.entries <= 0:
            return False
        n = len(tokens)
        for entry in self.saved:
            if (conversation or not entry.conversation) and len(entry.tokens) >= n and entry.tokens[:n] == tokens:
                self._touch(entry)
                return False
        return True

    def remember(self, seq: int, kv: list[int]) -> None:
        """Save sequence `seq`, which holds exactly the preamble `kv`, to host memory."""
        if self.wants(kv) and self._save(seq, kv, conversation=False):
            self._evict()

    def keep_conversation(self, seq: int, kv: list[int]) -> None:
        """Save what idle sequence `seq` holds (the tokens `kv`: a prompt and its answer) before a new
        request overwrites it, when it fits beside the saved preambles."""
        if not self.wants(kv, conversation=True):
            return
        room = self.max_bytes - sum(e.nbytes for e in self.saved if not e.conversation)
        size = self.ctx.seq_bytes(seq)
        if size > room:
            return  # it could only push out preambles, or itself
        if kept := self._save(seq, kv, conversation=True, size=size):
            # An earlier turn of the same conversation is part of this one now.
            self.saved = [
                e for e in self.saved if e is kept or not (e.conversation and kv[: len(e.tokens)] == e.tokens)
            ]
            self._evict()

    def _save(self, seq: int, kv: list[int], *, conversation: bool, size: int | None = None) -> Saved | None:
        t0 = time.perf_counter()
        state = self.ctx.seq_save(seq, size)
        self.profile.saves += 1
        self.profile.save_s += time.perf_counter() - t0
        if state is None:
            return None
        entry = Saved(list(kv), state, conversation=conversation)
        self._touch(entry)
        self.saved.append(entry)
        return entry

    def _evict(self) -> None:
        """At most `entries` of each kind; over the bytes, conversations go before preambles. Least
        recently used first."""
        for conversation in (True, False):
            kind = [e for e in self.saved if e.conversation is conversation]
            for entry in sorted(kind, key=lambda e: e.used)[: max(0, len(kind) - self.entries)]:
                self.saved.remove(entry)
        while self.saved and sum(e.nbytes for e in self.saved) > self.max_bytes:
            conversations = [e for e in self.saved if e.conversation]
            self.saved.remove(min(conversations or self.saved, key=lambda e: e.used))
