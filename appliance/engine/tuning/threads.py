"""How many CPU threads a decode step uses, chosen from measured step costs.

llama.cpp splits every matmul across its threads and waits at a barrier after each op. When
another process takes a core, the thread on that core is descheduled and every barrier waits for
it, so a fixed thread count collapses beside a busy neighbour while fewer threads keep most of
their quiet speed. So the policy keeps a running cost per generated row for each thread count it
tries, uses the cheapest, and now and then runs a few steps with another count so it notices when
the contention comes or goes: every EXPLORE_EVERY steps, sooner when that many steps would take
long (contention from the start makes 64 steps take minutes), and at once when a step costs
several times its count's running cost.

Exploring is paid for out of a budget, since under contention a step with more threads can cost
many times a step of the current count. A round ends after its first step when that step is clearly
dearer than the current count, and the time a round costs over the current count puts the next
round off until the current count has run EXPLORE_BUDGET's inverse times as long. Prompt steps
never explore: they are not measured, and one run with the wrong count costs many steps.

Where the kernel's counters are readable (idle_cpu.py), the policy also asks how many cores
sat idle before it tries more threads: a try with fewer idle cores than the threads it adds is put
off (it would only measure the stall), and when the idle cores come back, as when a busy
neighbour stops, a try runs at once instead of after the budget's wait. A try put off for
FALLBACK_S still runs, under the budget, in case the counters mislead (a CPU quota, say).

The measurements behind each constant: docs/decisions/004-adaptive-threads.md.

Pure but for that probe, which the engine passes in: the scheduler reports timings and asks which
count to use next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Every this many steps, or this many seconds of steps, a few steps try another thread count.
EXPLORE_EVERY = 64
EXPLORE_AFTER_S = 5.0
EXPLORE_STEPS = 3
# A step this many times dearer per row than its count's running cost: contention just came.
SURPRISE = 4.0
# Share of decode time that exploring may cost over what the current count would have taken.
EXPLORE_BUDGET = 0.05
# An exploring step this many times dearer per row than the current count ends its round: a count
# that is not cheaper on its first step will not be on the next two either. Low enough that on a
# quiet machine, where one thread costs well over this much more per row than all of them, a round
# ends after one step (docs/decisions/004-adaptive-threads.md).
ABANDON = 1.25
# Weight of the newest observation in a running cost.
ALPHA = 0.3
# Idle cores a try needs for each thread it adds, and (higher, so a neighbour that comes and goes
# does not set off try after try) the idle cores that count as a core coming free; how often
# (seconds of steps) they are read while below the most threads, how long a try may be put off
# for want of them, and the share of decode time a try on a core coming free may cost: five times
# EXPLORE_BUDGET, so after a 3 s round the next such try waits 12 s of steps, not a minute.
IDLE_PER_THREAD = 0.5
FREED_PER_THREAD = 0.8
PROBE_EVERY_S = 0.5
FALLBACK_S = 60.0
FREED_BUDGET = 0.25


def rows_bucket(rows: int) -> int:
    """Rows of a step rounded up to a power of two. Costs per row compare only within a bucket: a
    row of an 8-row step costs about half a row of a 1-row step, so a running cost blended over
    batch sizes made one thread at 8 rows look no dearer than two threads' cost left over from
    1-row steps, and switched a growing batch to the dearer count
    (docs/decisions/004-adaptive-threads.md)."""
    return 1 << (max(1, rows) - 1).bit_length()


@dataclass
class ThreadPolicy:
    """Thread counts from 1 to `most`; `fixed` (an explicit --threads) turns adaptation off."""

    most: int
    fixed: bool = False
    # Idle cores since its last call (None when unknown): idle_cpu.py, or a test's stand-in.
    idle: Callable[[], float | None] | None = None
    current: int = 0
    # Running seconds per generated row, by (thread count, rows bucket): see rows_bucket.
    cost: dict[tuple[int, int], float] = field(default_factory=dict)
    # The rows bucket of the last decode-only step: the batch size the next steps most likely have.
    rows: int = 1
    _steps: int = 0
    _exploring: int = 0
    _explore_with: int = 0
    # A count whose running cost is stale (last measured an exploration ago): its next
    # observation replaces it rather than blending in, so a change in contention shows at once.
    _stale: int = 0
    # Seconds of observed steps since the last exploration, and whether the next step should explore.
    _since_s: float = 0.0
    _explore_now: bool = False
    # Seconds the last exploration round cost over the current count's running cost.
    _debt_s: float = 0.0
    # Seconds of steps since the idle cores were last read, their last reading, whether a reading
    # since the last try was too low for more threads, and seconds a try up has been put off.
    _since_probe_s: float = 0.0
    _free: float | None = None
    _was_busy: bool = False
    _put_off_s: float = 0.0

    def __post_init__(self) -> None:
        self.most = max(1, self.most)
        self.current = self.most

    def choose(self, prefill: bool = False) -> int:
        """The thread count for the next step (`prefill`: it decodes prompt tokens)."""
        if self.fixed or self.most == 1:
            return self.most
        if prefill:
            return self.current
        self._steps += 1
        if self._exploring:
            self._exploring -= 1
            return self._explore_with
        due = self._steps >= EXPLORE_EVERY or self._since_s >= EXPLORE_AFTER_S or self._explore_now
        probe = self.idle is not None and self.current < self.most and self._since_probe_s >= PROBE_EVERY_S
        if not (due or probe):  # most steps: nothing to decide
            return self.current
        # Try the count whose cost is oldest news: the other one when there are two.
        others = [n for n in self.candidates() if n != self.current]
        pick = min(others, key=lambda n: self.cost.get((n, self.rows), 0.0)) if others else self.current
        freed = probe and self._read_idle(pick)
        if pick > self.current and self._free is not None and not self._room_for(pick):
            if due and self._put_off_s < FALLBACK_S:  # no idle cores to add threads on: not now
                self._put_off_s += self._since_s
                self._steps, self._since_s, self._explore_now = 0, 0.0, False
            due = due and self._put_off_s >= FALLBACK_S
        freed = freed and self._since_s >= self._debt_s / FREED_BUDGET
        if freed or (due and self._since_s >= self._debt_s / EXPLORE_BUDGET):
            self._steps, self._since_s, self._explore_now, self._debt_s, self._put_off_s = 0, 0.0, False, 0.0, 0.0
            self._was_busy = False
            self._explore_with = pick
            self._exploring = EXPLORE_STEPS - 1
            self._stale = self._explore_with
            return self._explore_with
        return self.current

    def _room_for(self, threads: int, per_thread: float = IDLE_PER_THREAD) -> bool:
        assert self._free is not None
        return self._free >= per_thread * (threads - self.current)

    def _read_idle(self, pick: int) -> bool:
        """Read the idle cores (every PROBE_EVERY_S of steps while below the most threads); True when
        they are clearly back for `pick` after a reading since the last try was too low, so a try
        should run soon."""
        assert self.idle is not None
        self._since_probe_s = 0.0
        self._free = self.idle()
        if self._free is None or pick <= self.current:
            return False
        if not self._room_for(pick):
            self._was_busy = True
            return False
        return self._was_busy and self._room_for(pick, FREED_PER_THREAD)

    @property
    def adapts(self) -> bool:
        """Whether the count follows measured step costs (not fixed by --threads, more than one core)."""
        return not self.fixed and self.most > 1

    def state(self) -> str:
        """The count in use and the running costs it was chosen by, in a few words (the hive status)."""
        if self.fixed:
            return f"{self.most} threads on every step (a fixed count)"
        if self.most == 1:
            return "1 thread: one core to run on, nothing to choose"
        here = sorted((n, c) for (n, r), c in self.cost.items() if r == self.rows)
        costs = ", ".join(f"{n} threads {1000 * c:.1f} ms" for n, c in here)
        measured = f" (a row of a {self.rows}-row step: {costs})" if costs else " (no step measured yet)"
        return f"{self.current} of {self.most} threads{measured}"

    def candidates(self) -> list[int]:
        # All counts up to 4, then halvings: enough to step around a busy core without trying them all.
        counts = set(range(1, min(self.most, 4) + 1))
        n = self.most
        while n > 4:
            counts.add(n)
            n //= 2
        return sorted(counts)

    def observe(self, threads: int, seconds: float, rows: int) -> None:
        """A decode-only step of `rows` rows took `seconds` with `threads` threads."""
        if self.fixed or rows <= 0:
            return
        per_row = seconds / rows
        self.rows = rows_bucket(rows)
        key = (threads, self.rows)
        old = self.cost.get(key)
        usual = self.cost.get((self.current, self.rows))
        if threads != self.current and usual is None:  # an exploring step at a batch size new to the current count
            self._exploring = 0  # nothing to compare it with: the current count's next steps come first
        elif threads != self.current:  # an exploring step
            self._debt_s += max(0.0, seconds - rows * usual)
            if per_row > ABANDON * usual:
                self._exploring = 0  # the round's answer is clear; its other steps would cost as much
        elif threads == self.current and not self._exploring:  # exploration steps don't bring the next one closer
            self._since_s += seconds
            self._since_probe_s += seconds
            if old is not None and per_row > SURPRISE * old:
                self._explore_now = True
        if old is None or threads == self._stale:
            self.cost[key] = per_row
            self._stale = 0
        else:
            self.cost[key] = (1 - ALPHA) * old + ALPHA * per_row
        here = {n: c for (n, r), c in self.cost.items() if r == self.rows}
        best = min(here, key=here.__getitem__)
        # Switch only for a clear win over the current count at this batch size, so noise does not
        # flip the count back and forth.
        if best != self.current and self.current in here and here[best] < 0.8 * here[self.current]:
            self.current = best
            self._explore_now = False  # the switch was the answer
