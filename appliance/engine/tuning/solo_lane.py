"""The solo lane: a request that runs alone decodes on a second copy of the model whose one-row step
is faster, while batches stay on the main one.

Where the optimised copy is served (optimize.py), it wins every batched step (prefill, a step of
several sequences) but may lose the one-row step, since a lone token reads every weight once and the
copy's weights can be more bytes than the original's (Q8_0 against Q4_1). A single client waits on
exactly that step (docs/decisions/003-solo-lane.md). So where the report says so, the engine
loads the original beside the copy, with a context of the same shape, and a request that was
admitted with no other request running and still runs alone (nothing queued, no sibling choices,
no drafts) moves there after its prompt is prefilled on the copy: its KV cells are copied through
host memory (llama.cpp's per-sequence state) into the lane's sequence 0, and back before anything
else happens on the main context (another request arrives) or the request finishes (so the slot
keeps its whole history, as every slot does).

Both models compute the same K and V for the same tokens up to their rounding (the copy is the
original's weights requantised; perplexity +0.2%), so a sequence continues on the other model as it
would on either. Only a request admitted alone uses the lane, so a busy server never touches the
second model's weights after its first lone request leaves, and a burst's last request is not moved
for its last few tokens. A busy server that has not used the second model for a while unloads it
(UNLOAD_AFTER_S) and loads it again, in a thread, when a request runs alone once more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from appliance.engine.tuning.host_pages import HostPages

if TYPE_CHECKING:
    from appliance.engine.native.llama import Context, Model
    from appliance.engine.seams import LoneRequest

# The lane's own sequence: every request that moves there lands in stream 0, so the lane's KV cache
# commits one stream's memory, not one per slot.
LANE_SEQ = 0

# Moving costs by the cell, saving by the token: a move there and back costs about what a few of the
# lane's one-row steps save. So a request goes only with at least one token to go for every
# HISTORY_PER_TOKEN cells it holds, and never for its last few tokens
# (docs/decisions/003-solo-lane.md).
HISTORY_PER_TOKEN = 48
MIN_TOKENS_LEFT = 8


# A busy server (several requests running, or one waiting) unloads the lane's model once no request
# has decoded there for this many seconds: its weights and cells are given back as soon as requests
# run together (release_memory), but its vocabulary and context only go with the model. The next
# lone request loads it again in a thread and decodes on the copy until it is there. Seconds of
# disuse, not the first busy step, so that a client whose requests now and then overlap another's
# keeps it, and a load comes at most once per UNLOAD_AFTER_S however the traffic alternates
# (docs/decisions/003-solo-lane.md).
UNLOAD_AFTER_S = 5.0

# The lane's policy, which the model tool's gate and serve's file choice read (measurements:
# docs/decisions/003-solo-lane.md). Serve loads the original beside the copy when the copy's
# one-row step is under SOLO_BELOW of the original's: within 3%, about the measurement's spread,
# the copy serves alone.
SOLO_BELOW = 0.97
# With the lane on, a copy is kept at a one-row step down to this share of the original's
# (Gate.one_row_floor): lone requests then decode on the original, so the copy's one-row step only
# serves a request left alone by others that finished first.
SOLO_ONE_ROW_FLOOR = 0.70

log = logging.getLogger("alveare.hive")


class LaneParts(NamedTuple):
    """What a load of the lane makes: its context, its model (closed after the context) and the pages
    of its KV cache committed as cells fill (None where they are not: a GPU's, another OS)."""

    ctx: Context
    model: Model
    kv_pages: HostPages | None

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


@dataclass
class LaneStats:
    entries: int = 0
    failed: int = 0
    steps: int = 0
    move_s: float = 0.0
    loads: int = 0
    unloads: int = 0

    def summary(self) -> str:
        return (
            f"{self.entries} lone requests moved there ({self.failed} could not be), {self.steps} steps decoded "
            f"there, {1000 * self.move_s:.0f} ms moving cells; unloaded {self.unloads} times while busy, "
            f"loaded again {self.loads} times"
        )


class SoloLane:
    """The engine's decode target (seams.DecodeTarget) where the lane is on: moves one
    sequence between the main context and the lane's, and says which context decodes it. `holding`
    is the main sequence whose cells live in the lane now (its main cells are stale).
    A busy server that has not used the lane for UNLOAD_AFTER_S unloads its model, and loads it
    again, in a thread, when a request runs alone once more; `parts` is None while it is not loaded."""

    def __init__(
        self,
        main: Context,
        parts: LaneParts,
        path: str,
        load: Callable[[], LaneParts],
        *,
        unload_after_s: float = UNLOAD_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.main = main
        self.parts: LaneParts | None = parts
        self.path = path
        self.holding: int | None = None
        # The lone request the lane could not take (llama.cpp refused the move): not tried again.
        self._refused: object = None
        self.stats = LaneStats()
        self._load = load
        self._unload_after_s = unload_after_s
        self._clock = clock
        self._pages = HostPages()
        # Weights or cells read since they were last released (llama.cpp maps the weights at load).
        self._in_memory = True
        # When a request last decoded there (or the lane was loaded).
        self._last_used = clock()
        # A load running in a thread, and what it made (or why it failed) once done.
        self._loading: threading.Thread | None = None
        self._loaded: LaneParts | None = None
        self._load_error: Exception | None = None
        # Set when a load again fails: the copy serves every step from then on.
        self.broken = False
        self._threads: int | None = None

    @property
    def lane(self) -> Context:
        """The lane's context (loaded: while it holds a request it always is)."""
        assert self.parts is not None
        return self.parts.ctx

    def release_memory(self) -> None:
        """While several requests run, the lane is idle: its model's pages stop counting as this
        process's memory (they stay in the page cache; the next lone request maps them again, in a
        few ms), and so do its KV cache's, every cell of which is free then, so a busy server's
        peak memory is about the copy's alone."""
        if self._in_memory and self.holding is None and self.parts is not None:
            self._pages.release_file(self.path)
            if self.parts.kv_pages is not None:
                self.parts.ctx.clear()
                self.parts.kv_pages.release_again()
            self._in_memory = False

    def state(self) -> str:
        """Where the lane stands and what it has done, in a few words (the hive status)."""
        name = Path(self.path).name
        if self.broken:
            return f"off: {name} could not be loaded again; the copy serves every step"
        if self.holding is not None:
            where = "decoding a request running alone"
        elif self.parts is not None:
            where = "loaded"
        else:
            where = "loading again" if self._loading is not None else "unloaded while busy"
        return f"{name} {where}; {self.stats.summary()}"

    def ctx_for_step(self) -> Context | None:
        return self.lane if self.holding is not None else None

    def seq_of(self, seq: int) -> int:
        return LANE_SEQ if seq == self.holding else seq

    def stepped(self) -> None:
        self.stats.steps += 1

    def summary(self) -> str:
        return f"solo lane: {self.stats.summary()}"

    def let_go(self, seq: int) -> None:
        if seq == self.holding:
            self.leave()

    def enter(self, seq: int) -> bool:
        """Copy sequence `seq`'s cells into the lane; False (and nothing moved) if llama.cpp could not."""
        assert self.holding is None
        lane = self.lane
        t0 = time.perf_counter()
        lane.seq_rm(LANE_SEQ)
        state = self.main.seq_save(seq)
        ok = state is not None and lane.seq_restore(state, LANE_SEQ)
        self.stats.move_s += time.perf_counter() - t0
        if not ok:
            lane.seq_rm(LANE_SEQ)
            self.stats.failed += 1
            return False
        self.holding = seq
        self._in_memory = True
        self.stats.entries += 1
        return True

    def follow(self, lone: LoneRequest | None, busy: bool) -> None:
        """Move the request running alone here, or the held one back (lane_candidate decides);
        unload the lane's model after a busy spell, and load it again for a lone request."""
        self._take_load()
        self._unload_if_unused(busy)
        seq = lane_candidate(lone, self.holding) if lone is None or lone.owner is not self._refused else None
        if seq == self.holding:
            return
        self.leave()
        if seq is None or not self._ready():
            return
        if not self.enter(seq):
            self._refused = lone.owner if lone is not None else None  # not tried again at every step

    def _unload_if_unused(self, busy: bool) -> None:
        """Unload the lane's model when the server is busy and nothing has run there for a while."""
        now = self._clock()
        if self.holding is not None:
            self._last_used = now
            return
        if busy and self.parts is not None and now - self._last_used >= self._unload_after_s:
            self.parts.close()
            self.parts = None
            self._pages.trim_heap()
            self.stats.unloads += 1
            log.debug("solo lane: unloaded, unused for %.0f s", now - self._last_used)

    def _ready(self) -> bool:
        """The lane is loaded; if not, a load starts (once) and the request stays on the copy."""
        if self.parts is not None:
            return True
        if self._loading is None and not self.broken:
            self._loading = threading.Thread(target=self._load_in_thread, name="alveare-solo-lane", daemon=True)
            self._loading.start()
        return False

    def _load_in_thread(self) -> None:
        try:
            self._loaded = self._load()
        except Exception as exc:  # reported on the scheduler's thread (_take_load)
            self._load_error = exc

    def _take_load(self) -> None:
        """Put a finished load's parts in place (on the scheduler's thread, between steps)."""
        if self._loading is None or self._loading.is_alive():
            return
        self._loading.join()
        self._loading = None
        parts, self._loaded, error, self._load_error = self._loaded, None, self._load_error, None
        if parts is None:
            self.broken = True
            log.warning("solo lane off: could not load %s again (%s)", self.path, error)
            return
        if self._threads is not None:
            parts.ctx.set_threads(self._threads)
        self.parts = parts
        self._in_memory = True
        self._last_used = self._clock()
        self.stats.loads += 1

    def leave(self) -> None:
        """Copy the held sequence's cells back into the main context (whatever the lane decoded since)."""
        seq, self.holding = self.holding, None
        if seq is None:
            return
        lane = self.lane
        t0 = time.perf_counter()
        state = lane.seq_save(LANE_SEQ)
        ok = state is not None and self.main.seq_restore(state, seq)
        lane.seq_rm(LANE_SEQ)
        self.stats.move_s += time.perf_counter() - t0
        if not ok:
            # The main context had room for these cells before they moved, so this is llama.cpp
            # refusing: the sequence holds nothing, and the scheduler's failed step clears every slot.
            self.main.seq_rm(seq)
            raise RuntimeError("the solo lane could not move a sequence back to the main context")

    def drop(self) -> None:
        """Forget the held slot without copying (after a failed step, when every cell is cleared)."""
        self.holding = None
        if self.parts is not None:
            self.parts.ctx.clear()

    def set_threads(self, n: int) -> None:
        self._threads = n
        if self.parts is not None:
            self.parts.ctx.set_threads(n)

    def close(self) -> None:
        if self._loading is not None:
            self._loading.join()
            self._loading = None
            if self._loaded is not None:
                self._loaded.close()
                self._loaded = None
        if self.parts is not None:
            self.parts.close()
            self.parts = None


def lane_candidate(lone: LoneRequest | None, holding: int | None) -> int | None:
    """The sequence that may decode in the lane now: the lone request's (seams.LoneRequest),
    where one not there yet also has enough tokens to go for the move to pay."""
    if lone is None:
        return None
    if lone.seq != holding and (
        lone.tokens_left < MIN_TOKENS_LEFT or lone.tokens_left * HISTORY_PER_TOKEN < lone.cells
    ):
        return None
    return lone.seq
