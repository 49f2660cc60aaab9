"""What the scheduler keeps per slot: the slot (one KV sequence and what it holds) and the request
occupying it (its sampler, text, progress, drafts, sibling choices and deadlines)."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.engine.interface import Generation, GenerationRequest, TokenInfo
from appliance.engine.sampling import Sampler
from appliance.engine.seams import LoneRequest
from appliance.engine.speculative.drafting import Acceptance
from appliance.engine.speculative.lookup import NgramIndex
from appliance.engine.text import TextStream


@dataclass
class Active:
    """A request occupying a slot."""

    request: GenerationRequest
    generation: Generation
    sampler: Sampler
    text: TextStream
    done: int  # prompt tokens already in the KV cache
    cached: int  # of which were reused from the cache
    reserved: int
    last: int = -1  # sampled token not yet decoded
    completion: int = 0
    tokens: list[int] = field(default_factory=list)
    # Prompt-lookup drafting, for greedy requests that asked for it.
    lookup: NgramIndex | None = None
    acceptance: Acceptance = field(default_factory=Acceptance)
    # Text not yet sent: everything, for a caller that does not stream.
    held: list[str] = field(default_factory=list)
    # Tokens (with log-probabilities) whose text has not been sent yet.
    pending: list[TokenInfo] = field(default_factory=list)
    # Sibling choices (OpenAI's n) waiting in their own slots for this request's prompt.
    children: list[tuple[Slot, Active]] = field(default_factory=list)
    # Set on such a sibling: the slot whose prefilled prompt it will share; it prefills nothing.
    fork_from: Slot | None = None
    # When the generation is stopped: its first token's time plus the request's timeout_s.
    stop_at: float | None = None
    # Prompt length at which this slot holds exactly a preamble to save to host memory (None: none).
    save_at: int | None = None
    # Set while another request (this one) prefills the same unsaved preamble: this request
    # prefills nothing until that preamble is saved, then restores it instead of decoding it again.
    waits_for: Active | None = None
    # No other request was running when this one was admitted, nor has one been admitted since: it
    # may decode in the solo lane (solo_lane.py).
    alone: bool = False
    # What the KV sequence must hold before the next token is sampled: the prompt; for a request
    # resuming after a pause (fairness.py), its prompt, what it generated, and its last token.
    feed: list[int] = field(default_factory=list)
    # `completion` when it got its slot (or got it back): the fair scheduler lets it run a while.
    run_from: int = 0
    # The key of the LoRA adapter its cells are computed with (adapters.py; 0: none).
    adapter: int = 0

    def __post_init__(self) -> None:
        if not self.feed:
            self.feed = self.request.prompt_tokens

    @property
    def prefilling(self) -> bool:
        return self.done < len(self.feed)


@dataclass
class Slot:
    """A request slot: one KV sequence."""

    seq: int
    kv: list[int] = field(default_factory=list)  # tokens in this sequence's KV cells, by position
    active: Active | None = None
    reply_at: int = 0  # where the last request's answer starts in `kv` (its prompt's length)
    adapter: int = 0  # the key of the adapter `kv`'s cells were computed with (adapters.py; 0: none)


def lone_request(slots: list[Slot], waiting: int) -> LoneRequest | None:
    """The request a decode target may take elsewhere: the only one running, admitted alone (no other
    running since), past its prompt, with nothing queued, no sibling choices waiting for it and no
    drafting (seams.LoneRequest), decoded by the base model alone: a target's context carries no adapter."""
    if waiting:
        return None
    active = [s for s in slots if s.active is not None]
    if len(active) != 1:
        return None
    slot = active[0]
    a = slot.active
    assert a is not None
    if not a.alone or a.prefilling or a.children or a.fork_from is not None or a.lookup is not None or a.adapter:
        return None
    return LoneRequest(owner=a, seq=slot.seq, cells=len(slot.kv), tokens_left=a.request.max_tokens - a.completion)
