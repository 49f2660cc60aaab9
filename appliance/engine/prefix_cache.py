"""Shared preambles (specialist and system prompts) saved from the KV cache to host memory, like
llama-server's prompt cache, and restored into a slot instead of being prefilled again. Also the
conversations that idle slots held when a new request takes their slot: a chat's next turn
restores its whole history (prompt and answer) rather than prefilling it again.

Why host memory rather than extra resident sequences: every cell in the KV cache costs every later
decode step some attention work, so dozens of resident preambles slowed every token down, while a
saved one costs nothing until it is restored, a memory copy (docs/decisions/007-host-memory-costs.md).

A preamble is saved from the slot that prefills it, at the step where that slot's sequence holds
exactly the preamble (the scheduler ends a prefill chunk there). So no sequence is ever copied
in part, which a split KV cache could not do.

Preambles serve many requests, a conversation one caller: conversations are dropped first, and
only they make room for each other, so a stream of one-off requests never pushes out a preamble.
Nor does it copy histories nobody asks for again: until a caller comes back to a conversation (its
next turn sends it back, from a slot, kept here or dropped), a conversation cut short is remembered
by a digest of its tokens, neither copied nor kept.
"""

from __future__ import annotations

import ctypes
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.engine.native.llama import Context
from appliance.engine.stats import Profile

if TYPE_CHECKING:
    from appliance.engine.slots import Slot

# Preambles shorter than this are not worth a cache entry.
MIN_CACHE = 16
# Conversations kept while none is claimed: none. Saving every one-off request's history costs a
# copy of its cells per request (from GPU memory on a GPU) and host memory for histories that
# one-off traffic never restores (docs/decisions/007-host-memory-costs.md). So until a chat's next turn
# claims its conversation, kept, resident or remembered (a digest of a cut conversation's tokens is
# kept, like an ARC cache's ghost entries), conversations are remembered by that digest only; a claim lifts the
# limit to `entries` until as many conversations in a row go unclaimed. The price: the first chats
# pushed out of their slots before any caller came back prefill their history again, once.
UNCLAIMED_KEEP = 0


def claim_length(tokens: list[int], reply_at: int) -> int:
    """How much of a conversation's tokens a next turn sends back: its prompt and the start of its
    answer (not all of it: the caller's text is tokenised again, or cut at a stop string)."""
    return min(len(tokens), reply_at + 1)


def prefix_digest(tokens: list[int], n: int) -> int:
    """What a dropped conversation is remembered by, and a prompt compared with: its first n tokens."""
    return hash(tuple(tokens[:n]))


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
    # Where a conversation's answer starts in `tokens` (its last prompt's length).
    reply_at: int = 0
    # The key of the adapter the cells were computed with: only a prompt under the same one takes them.
    adapter: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.state)


class PrefixCache:
    """At most `entries` preambles and as many conversations (UNCLAIMED_KEEP while callers do not come
    back to them) in at most `max_bytes`, least recently used dropped first."""

    def __init__(self, ctx: Context, *, entries: int, max_bytes: int, profile: Profile) -> None:
        self.ctx = ctx
        self.entries = entries
        self.max_bytes = max_bytes
        self.profile = profile
        self.saved: list[Saved] = []
        self._clock = 0
        # Conversations saved since one was last claimed; a fresh cache starts as if none were.
        self._unclaimed = entries
        # Conversations dropped or cut lately, to notice their callers coming back: (n, hash of the
        # first n tokens), n = the prompt and the first answer token (`claim_length`). A digest, not
        # the tokens: an 8k-token history held as a list costs ~300 KB, and 32 of them ~9 MB.
        self._dropped: deque[tuple[int, int]] = deque(maxlen=max(entries, 0))

    def _touch(self, entry: Saved) -> None:
        self._clock += 1
        entry.used = self._clock

    def best(self, prompt: list[int], limit: int, adapter: int = 0) -> tuple[Saved | None, int]:
        """The saved entry, computed under `adapter`, sharing the longest prefix with `prompt` (at most
        `limit` tokens); the shortest of those, since a restore copies the whole entry."""
        best, length = None, 0
        for entry in self.saved:
            if entry.adapter != adapter:
                continue
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

    def notice(self, prompt: list[int], resident: list[tuple[list[int], int]]) -> None:
        """A new request's prompt: a claim if it is the next turn of a conversation kept or dropped
        here or still `resident` in a slot ((tokens, reply_at) of each), that is, it sends back that
        conversation's prompt and the start of its answer (all of the answer may not match: the
        caller's text is tokenised again, or cut at a stop string)."""
        kept = [(e.tokens, e.reply_at) for e in self.saved if e.conversation]
        for tokens, reply_at in (*resident, *kept):
            n = claim_length(tokens, reply_at)
            if prompt[:n] == tokens[:n]:
                self._unclaimed = 0
                return
        digests: dict[int, int] = {}  # the prompt's, by length
        for n, digest in self._dropped:
            if len(prompt) < n:
                continue
            if n not in digests:
                digests[n] = prefix_digest(prompt, n)
            if digests[n] == digest:
                self._unclaimed = 0
                return

    def wants(self, tokens: list[int], *, conversation: bool = False, adapter: int = 0) -> bool:
        """Whether these tokens should be saved: long enough, and not saved already, as themselves or
        as the start of a longer entry. A preamble inside a saved conversation is still saved as a
        preamble: the conversation goes first, and restoring it would copy the whole chat."""
        if len(tokens) < MIN_CACHE or self.entries <= 0:
            return False
        n = len(tokens)
        for entry in self.saved:
            same = entry.adapter == adapter and len(entry.tokens) >= n and entry.tokens[:n] == tokens
            if same and (conversation or not entry.conversation):
                self._touch(entry)
                return False
        return True

    def remember(self, seq: int, kv: list[int], adapter: int = 0) -> None:
        """Save sequence `seq`, which holds exactly the preamble `kv` (computed under `adapter`), to host memory."""
        if self.wants(kv, adapter=adapter) and self._save(seq, kv, conversation=False, adapter=adapter):
            self._evict()

    def keep_conversation(self, slot: Slot) -> None:
        """Save what an idle slot holds (a prompt and its answer) before a new request overwrites
        it, when it fits beside the saved preambles."""
        seq, kv = slot.seq, slot.kv
        if not self.wants(kv, conversation=True, adapter=slot.adapter):
            return
        if self.conversations_kept == 0:  # nobody came back to a chat lately: a digest only
            self._remember_dropped(kv, slot.reply_at)
            self._unclaimed += 1
            return
        room = self.max_bytes - sum(e.nbytes for e in self.saved if not e.conversation)
        size = self.ctx.seq_bytes(seq)
        if size > room:
            return  # it could only push out preambles, or itself
        if kept := self._save(seq, kv, conversation=True, size=size, adapter=slot.adapter):
            kept.reply_at = min(slot.reply_at, len(kv))
            self._unclaimed += 1
            # An earlier turn of the same conversation is part of this one now.
            self.saved = [
                e
                for e in self.saved
                if e is kept or not (e.conversation and e.adapter == kept.adapter and kv[: len(e.tokens)] == e.tokens)
            ]
            self._evict()

    def _save(
        self, seq: int, kv: list[int], *, conversation: bool, size: int | None = None, adapter: int = 0
    ) -> Saved | None:
        t0 = time.perf_counter()
        state = self.ctx.seq_save(seq, size)
        self.profile.saves += 1
        self.profile.save_s += time.perf_counter() - t0
        if state is None:
            return None
        entry = Saved(list(kv), state, conversation=conversation, adapter=adapter)
        self._touch(entry)
        self.saved.append(entry)
        return entry

    def forget(self, adapter: int) -> None:
        """Drop what was computed under an adapter no request will use again (it was replaced or removed)."""
        self.saved = [e for e in self.saved if e.adapter != adapter]

    @property
    def chats_come_back(self) -> bool:
        """Whether a conversation was claimed since the last `entries` saves."""
        return self._unclaimed < self.entries

    @property
    def conversations_kept(self) -> int:
        """How many conversations may stay: `entries` while chats come back, UNCLAIMED_KEEP otherwise."""
        return self.entries if self.chats_come_back else min(self.entries, UNCLAIMED_KEEP)

    def _evict(self) -> None:
        """At most `entries` preambles and conversations_kept conversations; over the bytes,
        conversations go before preambles. Least recently used first."""
        for conversation in (True, False):
            kind = [e for e in self.saved if e.conversation is conversation]
            cap = self.conversations_kept if conversation else self.entries
            for entry in sorted(kind, key=lambda e: e.used)[: max(0, len(kind) - cap)]:
                self._drop(entry)
        while self.saved and sum(e.nbytes for e in self.saved) > self.max_bytes:
            conversations = [e for e in self.saved if e.conversation]
            self._drop(min(conversations or self.saved, key=lambda e: e.used))

    def _drop(self, entry: Saved) -> None:
        self.saved.remove(entry)
        if entry.conversation:
            self._remember_dropped(entry.tokens, entry.reply_at)

    def _remember_dropped(self, tokens: list[int], reply_at: int) -> None:
        n = claim_length(tokens, reply_at)
        self._dropped.append((n, prefix_digest(tokens, n)))
