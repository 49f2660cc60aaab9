"""Where a new request's prompt starts from: the longest prefix already in a slot's KV cells
(copied: by tagging cells when unified, through host memory when split) or among the preambles and
conversations saved to host memory (restored, a memory copy), so only the rest is prefilled. Which
free slot it takes: with split streams, while callers come back to their chats, one whose history
it extends or an empty one if any, so that idle slots keep their chats resident; otherwise the best
match, whose history is saved to host memory first (like llama-server's prompt cache) so that its
chat's next turn restores it.
Also the requests of a burst that share a preamble nobody has saved yet: one prefills it, the
others wait for it to be saved and restore it.
Cells are reused only under the adapter they were computed with (Slot.adapter, Saved.adapter).
"""

from __future__ import annotations

import ctypes

from appliance.engine.native.llama import Context
from appliance.engine.prefix_cache import MIN_CACHE, PrefixCache, common_prefix
from appliance.engine.slots import Active, Slot
from appliance.engine.stats import Stats

# A copied prefix must save at least this many tokens of prefill to be worth a copy.
MIN_COPY = 8


class PromptReuse:
    def __init__(self, ctx: Context, slots: list[Slot], prefixes: PrefixCache, stats: Stats) -> None:
        self.ctx = ctx
        self.slots = slots
        self.prefixes = prefixes
        self.stats = stats

    def save_point(self, prompt: list[int], cache_prefix: int, adapter: int = 0) -> int | None:
        """Where the slot will hold exactly a preamble worth saving (its prefill stops there once, to
        save it), or None."""
        limit = len(prompt) - 1
        save_at = cache_prefix if 0 < cache_prefix <= limit else None
        return save_at if save_at is not None and self.prefixes.wants(prompt[:save_at], adapter=adapter) else None

    def start(self, prompt: list[int], free: list[Slot], save_at: int | None, adapter: int = 0) -> tuple[Slot, int]:
        """The free slot to use and how many prompt tokens it already holds, copied or restored, for a
        request under `adapter`."""
        # The last prompt token is always decoded, for its logits; a preamble to save is crossed.
        limit = save_at - 1 if save_at is not None else len(prompt) - 1
        self.prefixes.notice(prompt, [(s.kv, s.reply_at) for s in self.slots if s.active is None and s.reply_at])
        own = {s.seq: min(common_prefix(s.kv, prompt), limit) if s.adapter == adapter else 0 for s in self.slots}
        # Split, while callers come back to their chats (prefix_cache.py): a free slot whose history
        # this prompt would not cut short (the same chat's last turn, or an empty slot) keeps the
        # other idle slots' chats resident for their next turns, at no cost to anyone's steps.
        # Otherwise the best match, cut short (its history saved below): unified, every resident
        # cell costs every slot's steps some attention work; split with one-off requests, an empty
        # slot's stream would commit memory (a page of every V row without flash attention:
        # docs/decisions/007-host-memory-costs.md) to keep histories nobody asks for again.
        cut = {s.seq: len(s.kv) - own[s.seq] for s in free}  # history a slot would lose
        keep_chats = not self.ctx.unified and self.prefixes.chats_come_back
        intact = [s for s in free if cut[s.seq] < MIN_CACHE] if keep_chats else []
        dest = max(intact or free, key=lambda s: (own[s.seq], -len(s.kv)))
        src = max(self.slots, key=lambda s: own[s.seq])
        saved, saved_len = self.prefixes.best(prompt, limit, adapter)
        if cut[dest.seq] >= MIN_CACHE:
            self.prefixes.keep_conversation(dest)  # its next turn restores it
        reuse = own[dest.seq]
        # Unified, a copy from a slot tags cells and moves nothing; split, it goes through host
        # memory and reads the source's whole history, so a saved entry as long is restored instead.
        beats_copy = own[src.seq] + (MIN_COPY if self.ctx.unified else 0)
        if saved is not None and saved_len >= max(reuse + MIN_COPY, beats_copy):
            reuse = saved_len if self.prefixes.restore(saved, dest.seq, saved_len) else 0
        elif src is not dest and own[src.seq] >= reuse + MIN_COPY:
            reuse = own[src.seq] if self.ctx.copy_prefix(src.seq, dest.seq, own[src.seq]) else 0
        else:
            self.ctx.seq_rm(dest.seq, reuse, -1)
        dest.kv, dest.adapter = prompt[:reuse], adapter
        return dest, reuse

    def free_idle_cells(self) -> bool:
        """Out of KV room: drop the prompts idle slots keep for reuse. True if anything was freed."""
        freed = False
        for slot in self.slots:
            if slot.active is None and slot.kv:
                self.ctx.seq_rm(slot.seq)
                slot.kv = []
                freed = True
        return freed

    def start_saved(
        self, tokens: list[int], state: ctypes.Array, free: list[Slot], adapter: int = 0
    ) -> tuple[Slot, int]:
        """The free slot to put saved cells back in (a paused request's: `tokens` and their `state`),
        the one with the least history to lose (kept first if worth it, as `start` keeps it), and how
        many tokens it holds then: all of them, or 0 where the cache had no room for them."""
        dest = min(free, key=lambda s: len(s.kv))
        if len(dest.kv) >= MIN_CACHE:
            self.prefixes.keep_conversation(dest)
        self.ctx.seq_rm(dest.seq)
        dest.kv = list(tokens) if self.ctx.seq_restore(state, dest.seq) else []
        dest.adapter = adapter
        return dest, len(dest.kv)

    def prefilling(self, preamble: list[int], adapter: int = 0) -> Active | None:
        """The request now prefilling `preamble` to save it, if any: a request of the same burst
        waits for it (Active.waits_for) rather than prefilling the preamble a second time."""
        n = len(preamble)
        for slot in self.slots:
            a = slot.active
            if a is None or a.save_at != n or a.waits_for is not None or a.adapter != adapter:
                continue
            if a.request.prompt_tokens[:n] == preamble:
                return a
        return None

    def resolve_waits(self, order: list[Slot]) -> None:
        """Requests waiting for a preamble another slot was prefilling: restore it once it is saved;
        prefill it themselves if that request ended first or the cache did not keep it."""
        for slot in order:
            a = slot.active
            if a is None or a.waits_for is None:
                continue
            source = a.waits_for
            if source.save_at is not None and any(s.active is source for s in self.slots):
                continue  # still on its way to the preamble
            a.waits_for = None
            prompt = a.request.prompt_tokens
            saved, saved_len = self.prefixes.best(prompt, len(prompt) - 1, a.adapter)
            if saved is None or saved_len < len(slot.kv) + MIN_COPY:
                continue
            if not self.prefixes.restore(saved, slot.seq, saved_len):
                slot.kv, a.done, a.cached = [], 0, 0  # no room to restore into: the sequence is empty now
                continue
            if not a.cached:
                self.stats.hits += 1
            self.stats.reused_tokens += saved_len - a.cached
            slot.kv = prompt[:saved_len]
            a.done = a.cached = saved_len
            if a.save_at is not None and saved_len >= a.save_at:
                a.save_at = None
