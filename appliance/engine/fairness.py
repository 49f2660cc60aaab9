"""Fair scheduling between flows (an account's live traffic, or its test keys' traffic): weighted
fair queueing at the token level.

Every batch row a step decodes for a flow (a generated token, or a prompt token) is charged to it,
divided by its weight: that is its service. The rules:
- Admission to a free slot goes to the waiting flow with the least service; within a flow,
  requests keep arrival order.
- A flow that was idle comes back at the hive's virtual time (the least service of the flows
  busy now, or when none is, of the last ones that were), never below: idle time banks no credit
  that would let it shut the others out later, and a flow that had the hive to itself carries no
  debt against one that arrived after.
- When no slot is free and the flow first in line holds fewer slots than its weighted share of
  them, a flow holding more than its share gives one up: its youngest generating request pauses
  (its cells saved to host memory) and waits at the head of its flow's queue to resume. So one
  tenant's burst is never everyone's wait for a slot.
- A full queue refuses a request only from a flow that already queues its share of the queue.
"""

from __future__ import annotations

import ctypes
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from appliance.engine.interface import Generation, GenerationRequest, Share
from appliance.engine.slots import Active

# A request keeps its slot for at least this many tokens after it got it (or got it back) before it
# can be paused for another flow: each pause costs a save and a restore, so slots must not thrash.
MIN_RUN_TOKENS = 8


@dataclass
class Paused:
    """A started request that gave its slot up to another flow, and what it needs to go on."""

    active: Active
    kv: list[int]  # the tokens its sequence held
    state: ctypes.Array | None  # its cells in host memory; None: decode them again
    since: float  # time.monotonic() when it paused


@dataclass
class Waiting:
    request: GenerationRequest
    generations: list[Generation]
    paused: Paused | None = None
    # Whether admission has weighed its start against its deadline (not while nothing is measured).
    judged: bool = False

    def kv_room(self) -> int:
        """KV cells it needs in a unified cache: its prompt and room for each choice's answer (siblings
        share the prompt's cells, tagged, not copied); paused, what it held and what is left."""
        if self.paused is not None:
            a = self.paused.active
            return len(self.paused.kv) + 1 + a.request.max_tokens - a.completion
        return len(self.request.prompt_tokens) + self.request.max_tokens * len(self.generations)


@dataclass
class Flow:
    name: str
    weight: float
    service: float = 0.0  # rows decoded for this flow, divided by its weight
    running: int = 0  # slots it holds
    queue: deque[Waiting] = field(default_factory=deque)

    @property
    def backlogged(self) -> bool:
        return self.running > 0 or bool(self.queue)


class FairQueue:
    """The waiting requests, by flow. Not thread-safe: the scheduler holds its lock around every call."""

    def __init__(self, slots: int, queue_size: int) -> None:
        self.slots = slots
        self.queue_size = queue_size
        self.flows: dict[str, Flow] = {}
        self._count = 0
        # The least service among busy flows, as last seen: where a flow coming back starts.
        self.vtime = 0.0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Waiting]:
        for flow in self.flows.values():
            yield from flow.queue

    def _flow(self, share: Share) -> Flow:
        flow = self.flows.get(share.flow)
        if flow is None:
            flow = self.flows[share.flow] = Flow(share.flow, share.weight)
        flow.weight = share.weight  # a plan's weight edited while its requests run
        if not flow.backlogged:
            self._advance()
            flow.service = max(flow.service, self.vtime)
        return flow

    def _advance(self) -> None:
        busy = [f.service for f in self.flows.values() if f.backlogged]
        if busy:
            self.vtime = max(self.vtime, min(busy))

    def full_for(self, share: Share, free_slots: int = 0) -> bool:
        """Whether a new request of this flow is refused for want of queue room: the queue is full
        (what waits for the `free_slots` not yet taken is not counted) and this flow already queues
        at least its weighted share of it."""
        room = self.queue_size + free_slots
        if self._count < room:
            return False
        flow = self.flows.get(share.flow)
        if flow is None or not flow.queue:
            return False
        weights = sum(f.weight for f in self.flows.values() if f.queue)
        return len(flow.queue) >= room * flow.weight / weights

    def push(self, entry: Waiting) -> None:
        self._flow(entry.request.share).queue.append(entry)
        self._count += 1

    def head(self) -> Waiting | None:
        """The request admission serves next: the first of the waiting flow with the least service
        (on a tie, the flow holding fewer slots)."""
        waiting = [f for f in self.flows.values() if f.queue]
        if not waiting:
            return None
        return min(waiting, key=lambda f: (f.service, f.running)).queue[0]

    def remove(self, entry: Waiting) -> None:
        """Out of the queue without a slot (cancelled, expired or refused)."""
        flow = self.flows[entry.request.share.flow]
        flow.queue.remove(entry)
        self._count -= 1
        self._forget(flow)

    def take(self, entry: Waiting, slots: int) -> None:
        """Out of the queue into `slots` slots (its flow keeps its service: it stays busy)."""
        flow = self.flows[entry.request.share.flow]
        flow.running += slots
        flow.queue.remove(entry)
        self._count -= 1

    def pause(self, entry: Waiting) -> None:
        """A running request gives its slot up and waits first in its flow's line."""
        flow = self.flows[entry.request.share.flow]
        flow.queue.appendleft(entry)
        flow.running = max(0, flow.running - 1)
        self._count += 1

    def ended(self, share: Share) -> None:
        flow = self.flows.get(share.flow)
        if flow is not None:
            flow.running = max(0, flow.running - 1)
            self._forget(flow)

    def _forget(self, flow: Flow) -> None:
        # An idle flow comes back at the busy flows' least service anyway: keep only the busy ones.
        if not flow.backlogged and len(self.flows) > 1:
            del self.flows[flow.name]

    def paused_adapters(self) -> set[int]:
        """The adapter keys of the paused requests waiting here (their cells need the adapter back)."""
        return {entry.paused.active.adapter for entry in self if entry.paused is not None}

    def services(self, flows: set[str]) -> dict[str, float]:
        return {name: self.flows[name].service for name in flows if name in self.flows}

    def charge(self, rows: list[tuple[Share, int]]) -> None:
        """A step's rows, by the flow they were decoded for."""
        for share, n in rows:
            flow = self.flows.get(share.flow)
            if flow is not None:
                flow.service += n / flow.weight
        self._advance()

    def entitled(self, flow: Flow) -> float:
        """The slots this flow's weight entitles it to among the flows busy now."""
        weights = sum(f.weight for f in self.flows.values() if f.backlogged)
        return self.slots * flow.weight / weights if weights else self.slots

    def yielding_flow(self) -> str | None:
        """With no slot free: the flow that should give a slot up to the one first in line, if any.
        The waiting flow must hold fewer slots than its share (at least one); the giver is the flow
        furthest over its own share."""
        entry = self.head()
        if entry is None:
            return None
        wanting = self.flows[entry.request.share.flow]
        if wanting.running >= max(1, math.floor(self.entitled(wanting))):
            return None
        over = [(f.running - self.entitled(f), f.name) for f in self.flows.values() if f is not wanting]
        excess, name = max(over, default=(0.0, ""))
        return name if excess > 0 and name else None

    def projected_order(self, cost: Callable[[Waiting], float], extra: Waiting | None = None) -> list[Waiting]:
        """The order admission would serve the queue (and `extra`, as if queued last in its flow) if
        nothing else arrived: each flow's turn comes by its service, which grows by each request's
        `cost` in rows over the flow's weight."""
        lines = {name: list(f.queue) for name, f in self.flows.items() if f.queue}
        service = {name: f.service for name, f in self.flows.items()}
        weight = {name: f.weight for name, f in self.flows.items()}
        if extra is not None:
            share = extra.request.share
            lines.setdefault(share.flow, []).append(extra)
            weight.setdefault(share.flow, share.weight)
            service.setdefault(share.flow, self.vtime)
        heap = [(service[name], name) for name in lines]
        heapq.heapify(heap)
        at = dict.fromkeys(lines, 0)
        order: list[Waiting] = []
        while heap:
            served, name = heapq.heappop(heap)
            entry = lines[name][at[name]]
            order.append(entry)
            at[name] += 1
            if at[name] < len(lines[name]):
                heapq.heappush(heap, (served + cost(entry) / weight[name], name))
        return order

    def deficits(self) -> dict[str, float]:
        """Each busy flow's slots short of its weighted share (negative: over it), for the metrics."""
        return {f.name: self.entitled(f) - f.running for f in self.flows.values() if f.backlogged}
