"""A request giving its slot up for a while to another flow's (fairness.py), and getting one back.

Pausing saves the request's cells to host memory and empties the slot; if llama.cpp cannot save
them, they stay in the idle slot, where the prefix search may still find them. Resuming restores the
saved cells (unsaved ones: what a slot or the prefix cache still holds of them, the rest decoded
again), then feeds the last sampled token, whose logits give the next: the answer goes on as if never paused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from appliance.engine.fairness import MIN_RUN_TOKENS, Paused, Waiting
from appliance.engine.native.llama import Context
from appliance.engine.reuse import PromptReuse
from appliance.engine.slots import Slot


def victim(admitted_order: Sequence[Slot], flow: str) -> Slot | None:
    """The request of `flow` to pause: its youngest generating one that has run its minimum since it
    got its slot, with no sibling choices or shared preamble waiting on it; None if it has none."""
    for slot in reversed(admitted_order):
        a = slot.active
        if (
            a is not None
            and a.request.share.flow == flow
            and not a.prefilling
            and not a.children
            and a.waits_for is None
            and a.completion - a.run_from >= MIN_RUN_TOKENS
        ):
            return slot
    return None


def pause(slot: Slot, ctx: Context) -> Waiting:
    """Take the request out of its slot (its cells already in `ctx`); returns its place in line."""
    a = slot.active
    assert a is not None
    kv = list(slot.kv)
    state = ctx.seq_save(slot.seq)
    if state is not None:
        ctx.seq_rm(slot.seq)
        slot.kv = []
    slot.active = None
    slot.reply_at = 0
    return Waiting(a.request, [a.generation], Paused(a, kv, state, time.monotonic()))


def resume(paused: Paused, free: list[Slot], reuse: PromptReuse) -> Slot:
    """Put a paused request in one of the free slots; returns the slot."""
    a = paused.active
    feed = [*paused.kv, a.last]
    if paused.state is not None:
        dest, done = reuse.start_saved(paused.kv, paused.state, free, a.adapter)
    else:  # its cells stayed in the idle slot: the prefix search finds them, or what is left of them
        dest, done = reuse.start(feed, free, None, a.adapter)
    a.feed, a.done, a.run_from = feed, done, a.completion
    a.alone = False
    paused_s = time.monotonic() - paused.since
    a.generation.timing.paused_s += paused_s
    if a.stop_at is not None:  # the pause does not count against its time limit
        a.stop_at += paused_s
    dest.active = a
    return dest
