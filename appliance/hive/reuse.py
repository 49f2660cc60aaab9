"""Where a new request's prompt starts from: the longest prefix already in a slot's KV cells
(copied: by tagging cells when unified, through host memory when split) or among the preambles saved
to host memory (restored, a memory copy), so only the rest is prefilled. Also the requests of a
burst that share a preamble nobody has saved yet: one prefills it, the others wait for it to be
saved and restore it.
"""

from __future__ import annotations

from appliance.hive.llama import Context
from appliance.hive.prefix_cache import PrefixCache, common_prefix
from appliance.hive.slots import Active, Slot
from appliance.hive.stats import Stats

# A copied prefix must save at least this many tokens of prefill to be worth a copy.
MIN_COPY = 8


class PromptReuse:
    def __init__(self, ctx: Context, slots: list[Slot], prefixes: PrefixCache, stats: Stats) -> None:
        self.ctx = ctx
        self.slots = slots
        self.prefixes = prefixes
        self.stats = stats

    def save_point(self, prompt: list[int], cache_prefix: int) -> int | None:
        """Where the slot will hold exactly a preamble worth saving (its prefill stops there once, to
        save it), or None."""
        limit = len(prompt) - 1
        save_at = cache_prefix if 0 < cache_prefix <= limit else None
        return save_at if save_at is not None and self.prefixes.wants(prompt[:save_at]) else None

    def start(self, prompt: list[int], free: list[Slot], save_at: int | None) -> tuple[Slot, int]:
        """The free slot to use and how many prompt tokens it already holds, copied or restored."""
        # The last prompt token is always decoded, for its logits; a preamble to save is crossed.
        limit = save_at - 1 if save_at is not None else len(prompt) - 1
        own = {s.seq: min(common_prefix(s.kv, prompt), limit) for s in self.slots}
        dest = max(free, key=lambda s: (own[s.seq], -len(s.kv)))
        src = max(self.slots, key=lambda s: own[s.seq])
        saved, saved_len = self.prefixes.best(prompt, limit)
        reuse = own[dest.seq]
        if saved is not None and saved_len >= max(reuse, own[src.seq]) + MIN_COPY:
            reuse = saved_len if self.prefixes.restore(saved, dest.seq, saved_len) else 0
        elif src is not dest and own[src.seq] >= reuse + MIN_COPY:
            reuse = own[src.seq] if self.ctx.copy_prefix(src.seq, dest.seq, own[src.seq]) else 0
        else:
            self.ctx.seq_rm(dest.seq, reuse, -1)
        dest.kv = prompt[:reuse]
        return dest, reuse

    def prefilling(self, preamble: list[int]) -> Active | None:
        """The request now prefilling `preamble` to save it, if any: a request of the same burst
        waits for it (Active.waits_for) rather than prefilling the preamble a second time."""
        n = len(preamble)
        for slot in self.slots:
            a = slot.active
            if a is not None and a.save_at == n and a.waits_for is None and a.request.prompt_tokens[:n] == preamble:
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
            saved, saved_len = self.prefixes.best(prompt, len(prompt) - 1)
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
