"""The solo lane: a request that runs alone decodes on a second copy of the model whose one-row step
is faster, while batches stay on the main one.

Where the optimised copy is served (optimize.py), it wins every batched step (prefill, a step of
several sequences) but may lose the one-row step: on a 2-core Xeon the Q8_0 copy's 1-row step is
0.78-0.83x the Q4_1 original's, since a lone token reads every weight once and Q8_0's are ~1.5x the
bytes. A single client there waits on exactly that step. So where the report says so, the engine
loads the original beside the copy, with a context of the same shape, and a request that was
admitted with no other request running and still runs alone (nothing queued, no sibling choices,
no drafts) moves there after its prompt is prefilled on the copy: its KV cells are copied through
host memory (llama.cpp's per-sequence state; about 2-3 ms for 100 tokens of the embedded model) into
the lane's sequence 0, and back before anything else happens on the main context (another request
arrives) or the request finishes (so the slot keeps its whole history, as every slot does).

Both models compute the same K and V for the same tokens up to their rounding (the copy is the
original's weights requantised; perplexity +0.2%), so a sequence continues on the other model as it
would on either. Only a request admitted alone uses the lane, so a busy server never touches the
second model's weights after its first lone request leaves, and a burst's last request is not moved
for its last few tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.hive.host_pages import HostPages

if TYPE_CHECKING:
    from appliance.hive.llama import Context, Model
    from appliance.hive.slots import Slot

# The lane's own sequence: every request that moves there lands in stream 0, so the lane's KV cache
# commits one stream's memory, not one per slot.
LANE_SEQ = 0

# Moving costs by the cell, saving by the token: on the Xeon a move there and back took ~5.8 ms for
# ~150 cells of the embedded model, what about 3 of the lane's one-row steps save (0.81x: ~2 ms a
# step). So a request goes only with at least one token to go for every HISTORY_PER_TOKEN cells it
# holds, and never for its last few tokens.
HISTORY_PER_TOKEN = 48
MIN_TOKENS_LEFT = 8


@dataclass
class LaneStats:
    entries: int = 0
    failed: int = 0
    steps: int = 0
    move_s: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.entries} lone requests moved there ({self.failed} could not be), {self.steps} steps decoded "
            f"there, {1000 * self.move_s:.0f} ms moving cells"
        )


class SoloLane:
    """Moves one slot's sequence between the main context and the lane's, and says which context
    decodes it. `holding` is the slot whose cells live in the lane now (its main cells are stale)."""

    def __init__(self, main: Context, lane: Context, model: Model, path: str, kv_pages: HostPages | None) -> None:
        self.main = main
        self.lane = lane
        self.model = model  # the lane's: closed with it
        self.path = path
        self.holding: Slot | None = None
        self.stats = LaneStats()
        self._pages = HostPages()
        # The lane's KV cache, committed as cells fill (None where it is not: a GPU's, another OS).
        self._kv_pages = kv_pages
        # Weights or cells read since they were last released (llama.cpp maps the weights at load).
        self._in_memory = True

    def release_memory(self) -> None:
        """While several requests run, the lane is idle: its model's pages stop counting as this
        process's memory (they stay in the page cache; the next lone request maps them again, in a
        few ms), and so do its KV cache's, every cell of which is free then, so a busy server's
        peak memory is about the copy's alone."""
        if self._in_memory and self.holding is None:
            self._pages.release_file(self.path)
            if self._kv_pages is not None:
                self.lane.clear()
                self._kv_pages.release_again()
            self._in_memory = False

    def ctx_for_step(self) -> Context:
        return self.lane if self.holding is not None else self.main

    def enter(self, slot: Slot) -> bool:
        """Copy `slot`'s cells into the lane; False (and nothing moved) if llama.cpp could not."""
        assert self.holding is None
        t0 = time.perf_counter()
        self.lane.seq_rm(LANE_SEQ)
        state = self.main.seq_save(slot.seq)
        ok = state is not None and self.lane.seq_restore(state, LANE_SEQ)
        self.stats.move_s += time.perf_counter() - t0
        if not ok:
            self.lane.seq_rm(LANE_SEQ)
            self.stats.failed += 1
            return False
        self.holding = slot
        self._in_memory = True
        self.stats.entries += 1
        return True

    def follow(self, slots: list[Slot], waiting: int) -> None:
        """Move the one request running alone here, or the held one back (lane_candidate decides)."""
        slot = lane_candidate(slots, waiting, self.holding)
        if slot is self.holding:
            return
        self.leave()
        if slot is not None and not self.enter(slot):
            assert slot.active is not None
            slot.active.alone = False  # not tried again at every step

    def leave(self) -> None:
        """Copy the held slot's cells back into the main context (whatever the lane decoded since)."""
        slot, self.holding = self.holding, None
        if slot is None:
            return
        t0 = time.perf_counter()
        state = self.lane.seq_save(LANE_SEQ)
        ok = state is not None and self.main.seq_restore(state, slot.seq)
        self.lane.seq_rm(LANE_SEQ)
        self.stats.move_s += time.perf_counter() - t0
        if not ok:
            # The main context had room for these cells before they moved, so this is llama.cpp
            # refusing; the slot then holds nothing rather than cells that do not match its tokens.
            self.main.seq_rm(slot.seq)
            slot.kv = []
            raise RuntimeError("the solo lane could not move a sequence back to the main context")

    def drop(self) -> None:
        """Forget the held slot without copying (after a failed step, when every cell is cleared)."""
        self.holding = None
        self.lane.clear()

    def set_threads(self, n: int) -> None:
        self.lane.set_threads(n)

    def close(self) -> None:
        self.lane.close()
        self.model.close()


def lane_candidate(slots: list[Slot], waiting: int, holding: Slot | None) -> Slot | None:
    """The slot that may decode in the lane now: the only request running, admitted alone, past its
    prompt, with nothing queued, no sibling choices waiting for it and no drafting; one not there yet
    also needs enough tokens to go for the move to pay."""
    if waiting:
        return None
    active = [s for s in slots if s.active is not None]
    if len(active) != 1:
        return None
    slot = active[0]
    a = slot.active
    assert a is not None
    if not a.alone or a.prefilling or a.children or a.fork_from is not None or a.lookup is not None:
        return None
    left = a.request.max_tokens - a.completion
    if slot is not holding and (left < MIN_TOKENS_LEFT or left * HISTORY_PER_TOKEN < len(slot.kv)):
        return None
    return slot
