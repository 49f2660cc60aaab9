"""Admission that fails fast: the wait for a slot estimated from the work ahead, so a request that
cannot start before its deadline is refused at once (503 with a Retry-After) instead of waiting it
out for a 504.

The estimate plays the queue forward in steps: each busy slot frees after its request's expected
remaining tokens, each request ahead (in fair order: FairQueue.ahead_of) takes the first slot to
free for its own expected length, and the new request starts where the next slot frees. A request's
expected length is its max_tokens, or less once answers have been seen to end sooner (the average
of the recent ones, never below what this request has already generated). Steps take the measured
average step time. It errs long (a prompt's steps count like a generated token's), so it refuses a
little early rather than let a caller wait for nothing.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Iterable

from appliance.core.errors import Overloaded
from appliance.engine.fairness import FairQueue, Waiting
from appliance.engine.interface import Finished, Generation, GenerationRequest

# Weight of the newest sample in the running averages: about the last 20 steps or answers.
SMOOTHING = 0.05
# How often the queued requests' starts are estimated again, to refuse early those that will not
# start before their deadline (an arrival is estimated at once): well within a second.
SWEEP_S = 0.25
# Decode steps timed before an estimate is made: the first few after a burst's prefill run faster
# than the burst's steps settle to, and an estimate from them admitted requests that the settled one
# refused a quarter of a second later.
MIN_STEPS = 8
# Estimated waits are stretched by this much: a request near the line is refused at once, rather
# than admitted on the first steps' timing and refused later when the estimate settles.
MARGIN = 1.1


class WaitEstimate:
    def __init__(self, prefill_chunk: int) -> None:
        self.prefill_chunk = max(1, prefill_chunk)
        self.step_s: float | None = None
        self._mean: float | None = None
        self._steps = 0
        self.answer_tokens: float | None = None

    def observe_step(self, seconds: float) -> None:
        # The mean of the first steps, then a running average; none is used before MIN_STEPS.
        self._steps += 1
        weight = max(SMOOTHING, 1 / self._steps)
        self._mean = seconds if self._mean is None else self._mean + weight * (seconds - self._mean)
        if self._steps >= MIN_STEPS:
            self.step_s = self._mean

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

    def starts_s(self, busy_left: Iterable[float], free: int, order: Iterable[float]) -> list[float]:
        """Seconds until each queued request gets a slot, taken in `order` (their expected steps, in
        the order admission will serve them): `busy_left` is each busy slot's expected steps left,
        `free` how many slots are free now."""
        frees = [0.0] * free + list(busy_left)
        steps = list(order)
        if self.step_s is None or not frees:
            return [0.0] * len(steps)  # nothing measured yet: nothing has run, so nothing is ahead for long
        heapq.heapify(frees)
        starts = []
        for n in steps:
            starts.append(frees[0] * self.step_s * MARGIN)
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
            if len(self._busy_left) >= self.slots and self.queue.full_for(request.share):
                # Room in the queue comes with the next slot freed: the first queued request's start.
                wait = self._starts(self.queue.projected_order(self._cost)[:1])[0]
                raise Overloaded(
                    "The appliance is at capacity: every slot is busy and the queue is full. Retry shortly.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if request.deadline is not None:
                order = self.queue.projected_order(self._cost, extra=entry)
                at = order.index(entry)
                wait = self._starts(order[: at + 1])[at]
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

    def _starts(self, order: list[Waiting]) -> list[float]:
        free = max(0, self.slots - len(self._busy_left))
        return self.estimate.starts_s(self._busy_left, free, [self._cost(e) for e in order])

    def publish(self, busy_left: list[float], step_s: float | None) -> None:
        """After a step: each busy slot's expected steps left, and the step's time (None: no step)."""
        with self.cond:
            self._busy_left = busy_left
            if step_s is not None:
                self.estimate.observe_step(step_s)

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
                starts = {id(e): s for e, s in zip(order, self._starts(order), strict=False)}
            for entry in list(self.queue):
                req, gens, paused = entry.request, entry.generations, entry.paused
                done = paused.active.completion if paused else 0
                if all(g.cancelled for g in gens):
                    end = Finished("cancelled", len(req.prompt_tokens), done)
                elif paused is not None:
                    continue  # started: never cut by admission
                elif req.deadline is not None and now + starts.get(id(entry), 0.0) > req.deadline:
                    # Its start slipped past its deadline (or the deadline came): refused as overload,
                    # never a timeout, since it never started.
                    wait = starts.get(id(entry), 0.0)
                    refusal = self._refusal(req, wait, waited=now >= req.deadline)
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
