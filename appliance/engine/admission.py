"""Admission that fails fast: the wait for a slot estimated from the work ahead, so a request that
cannot start before its deadline is refused at once (503 with a Retry-After) instead of waiting it
out for a 504.

The estimate plays the queue forward in steps: each busy slot frees after its request's expected
remaining tokens, each request ahead (in fair order: FairQueue.ahead_of) takes the first slot to
free for its own expected length, and the new request starts where the next slot frees. A request's
expected length is its max_tokens, or less once answers have been seen to end sooner (the average
of the recent ones, never below what this request has already generated). Steps take the median
of the recent decode steps' times. It errs long (a prompt's steps count like a generated token's),
so it refuses a little early rather than let a caller wait for nothing.
"""

from __future__ import annotations

import heapq
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from appliance.core.errors import Overloaded
from appliance.engine.fairness import FairQueue, Waiting
from appliance.engine.interface import Finished, Generation, GenerationRequest

if TYPE_CHECKING:
    from appliance.engine.slots import Active

# Weight of the newest answer length in their running average: about the last 20 answers.
SMOOTHING = 0.05
# Decode steps whose median is the step time: the last 21, so a few slow ones (a pause, a thread
# count tried, a burst of answers delivered) move it not at all, and a lasting change within ~10 steps.
STEP_WINDOW = 21
# How often the queued requests' starts are estimated again, to refuse early those that will not
# start before their deadline (an arrival is estimated at once): well within a second.
SWEEP_S = 0.25
# Decode steps timed before an estimate is made. Steps with prompt rows are not timed (a prompt's
# chunks are counted as steps of their own), so the first decode steps already show the burst's pace.
MIN_STEPS = 2
# A newcomer is admitted only if its estimated start, stretched by this much, comes before its
# deadline; once admitted, it is refused only if the unstretched estimate passes its deadline. The
# gap between the two is hysteresis: an estimate that drifts by less than this never turns an
# admission into a refusal seconds later (docs/decisions/009-fair-scheduling.md).
ADMIT_MARGIN = 1.2


class WaitEstimate:
    def __init__(self, prefill_chunk: int) -> None:
        self.prefill_chunk = max(1, prefill_chunk)
        self.step_s: float | None = None
        self._steps: deque[float] = deque(maxlen=STEP_WINDOW)
        self.answer_tokens: float | None = None

    def observe_step(self, seconds: float) -> None:
        """A decode step's time: the step time is the median of the recent ones, once MIN_STEPS are in."""
        self._steps.append(seconds)
        if len(self._steps) >= MIN_STEPS:
            self.step_s = statistics.median(self._steps)

    def prime(self, seconds: float) -> None:
        """A full step timed before serving (the scheduler's warm-up): counted as MIN_STEPS steps, so
        it is used at once and the first real steps soon outweigh it."""
        self._steps.extend([seconds] * MIN_STEPS)
        self.step_s = statistics.median(self._steps)

    def observe_answer(self, tokens: int) -> None:
        """A finished answer's length (stopped or cut at max_tokens)."""
        a = self.answer_tokens
        self.answer_tokens = tokens if a is None else a + SMOOTHING * (tokens - a)

    def expected_steps(self, request: GenerationRequest, generated: int = 0, prompt_left: int | None = None) -> float:
        """Steps a request still needs: its prompt's chunks, then the tokens it is expected to write."""
        left = len(request.prompt_tokens) if prompt_left is None else prompt_left
        answer = float(request.max_tokens)
        if self.answer_tokens is not None:
            answer = min(answer, max(self.answer_tokens, generated + 1))
        return -(-left // self.prefill_chunk) + max(0.0, answer - generated)

    def starts_s(self, busy_left: Iterable[float], free: int, order: Iterable[float]) -> list[float] | None:
        """Seconds until each queued request gets a slot, taken in `order` (their expected steps, in
        the order admission will serve them): `busy_left` is each busy slot's expected steps left,
        `free` how many slots are free now. None while nothing is measured."""
        frees = [0.0] * free + list(busy_left)
        steps = list(order)
        if self.step_s is None:
            return None
        if not frees:
            return [0.0] * len(steps)
        heapq.heapify(frees)
        starts = []
        for n in steps:
            starts.append(frees[0] * self.step_s)
            heapq.heapreplace(frees, frees[0] + n)
        return starts


class Admission:
    """The waiting line in front of the slots, shared by the event loop (submit) and the scheduler
    thread (everything else), under one lock: who waits, who is next (FairQueue), and whether a
    newcomer can start before its deadline at all (WaitEstimate)."""

    def __init__(self, *, slots: int, queue_size: int, prefill_chunk: int) -> None:
        self.cond = threading.Condition()
        self.queue = FairQueue(slots, queue_size)
        self.estimate = WaitEstimate(prefill_chunk)
        self.slots = slots
        # Expected steps left of each busy slot's request, as of the last step (the scheduler's).
        self._busy_left: list[float] = []
        self._swept_at = 0.0

    # ------------------------------------------------------------ event-loop side
    def submit(self, request: GenerationRequest, generations: list[Generation]) -> None:
        entry = Waiting(request, generations)
        with self.cond:
            free = max(0, self.slots - len(self._busy_left))
            if self.queue.full_for(request.share, free):
                # Room in the queue comes with the next slot freed: the first queued request's start.
                starts = self._starts(self.queue.projected_order(self._cost)[:1])
                wait = starts[0] if starts else 0.0
                raise Overloaded(
                    "The appliance is at capacity: every slot is busy and the queue is full. Retry shortly.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if request.deadline is not None:
                order = self.queue.projected_order(self._cost, extra=entry)
                at = order.index(entry)
                starts = self._starts(order[: at + 1])
                if starts is not None:  # else judged by the first sweep with an estimate
                    entry.judged = True
                    wait = starts[at] * ADMIT_MARGIN
                    if wait > 0 and time.monotonic() + wait > request.deadline:
                        raise self._refusal(request, wait)
            self.queue.push(entry)
            self.cond.notify()

    def _refusal(self, request: GenerationRequest, wait: float, *, waited: bool = False) -> Overloaded:
        limit = request.timeout_s or 0.0
        retry = max(1, math.ceil(wait - limit))
        why = (
            "no slot came free before the request's deadline"
            if waited
            else f"a slot is about {wait:.0f} s away, past this request's {limit:g} s limit"
        )
        return Overloaded(
            f"The appliance is busy: {why}. Retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )

    # ------------------------------------------------------------ scheduler side
    def _cost(self, entry: Waiting) -> float:
        """A queued request's expected steps (times its choices: each is a row of every step)."""
        paused = entry.paused
        if paused is None:
            steps = self.estimate.expected_steps(entry.request)
        else:
            a = paused.active
            prompt_left = 0 if paused.state is not None else len(a.feed)
            steps = self.estimate.expected_steps(a.request, a.completion, prompt_left)
        return steps * len(entry.generations)

    def _starts(self, order: list[Waiting]) -> list[float] | None:
        free = max(0, self.slots - len(self._busy_left))
        return self.estimate.starts_s(self._busy_left, free, [self._cost(e) for e in order])

    def take(self, entry: Waiting) -> None:
        """Out of the line into its slots (the scheduler's, under the lock): counted busy at once, so
        newcomers before the next step's publish are judged on the slots as they are."""
        self.queue.take(entry, len(entry.generations))
        self._busy_left.extend([self._cost(entry) / len(entry.generations)] * len(entry.generations))

    def publish(self, running: list[Active], step_s: float | None) -> None:
        """After a step: the requests in the slots, and the step's time (None: no step)."""
        expect = self.estimate.expected_steps
        busy_left = [expect(a.request, a.completion, len(a.feed) - a.done) for a in running]
        with self.cond:
            self._busy_left = busy_left
            if step_s is not None:
                blind = self.estimate.step_s is None
                self.estimate.observe_step(step_s)
                if blind and self.estimate.step_s is not None:
                    self._swept_at = -math.inf  # judge those that arrived blind at once

    def sweep(self, now: float) -> list[tuple[Generation, Finished]]:
        """Take out what will never get a slot: requests whose callers left, whose deadline passed,
        or (every SWEEP_S) whose estimated start now lies past their deadline. Returns their ends."""
        ends: list[tuple[Generation, Finished]] = []
        with self.cond:
            if not len(self.queue):
                return ends
            starts: dict[int, float] = {}
            if now - self._swept_at >= SWEEP_S:
                self._swept_at = now
                order = self.queue.projected_order(self._cost)
                starts = dict(zip(map(id, order), self._starts(order) or [], strict=False))
            for entry in list(self.queue):
                req, gens, paused = entry.request, entry.generations, entry.paused
                done = paused.active.completion if paused else 0
                start = starts.get(id(entry))
                if start is not None and not entry.judged:
                    entry.judged = True  # arrived before any estimate: judged now as a newcomer is
                    start *= ADMIT_MARGIN
                if all(g.cancelled for g in gens):
                    end = Finished("cancelled", len(req.prompt_tokens), done)
                elif paused is not None:
                    continue  # started: never cut by admission
                elif req.deadline is not None and now + (start or 0.0) > req.deadline:
                    # Its start slipped past its deadline (or the deadline came): refused as overload,
                    # never a timeout, since it never started.
                    refusal = self._refusal(req, start or 0.0, waited=now >= req.deadline)
                    end = Finished(
                        "overloaded",
                        len(req.prompt_tokens),
                        0,
                        error=refusal.message,
                        retry_after_s=float(refusal.headers["Retry-After"]),
                    )
                else:
                    continue
                self.queue.remove(entry)
                if paused is not None:
                    paused.active.sampler.close()
                ends.extend((g, end) for g in gens)
        return ends

    def deficits(self) -> dict[str, float]:
        """Each busy flow's slots short of its weighted share now (FairQueue.deficits)."""
        with self.cond:
            return self.queue.deficits()

    def drain(self) -> list[Waiting]:
        """Shutdown: everything still waiting, out of the line."""
        with self.cond:
            entries = list(self.queue)
            for entry in entries:
                self.queue.remove(entry)
        return entries
