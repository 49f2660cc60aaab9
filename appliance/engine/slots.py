"""What the scheduler keeps per slot: the slot (one KV sequence and what it holds) and the request
occupying it (its sampler, text, progress, drafts, sibling choices and deadlines)."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.engine.interface import Generation, GenerationRequest, TokenInfo
from appliance.engine.sampling import Sampler
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

    @property
    def prefilling(self) -> bool:
        return self.done < len(self.request.prompt_tokens)


@dataclass
class Slot:
    """A request slot: one KV sequence."""

    seq: int
    kv: list[int] = field(default_factory=list)  # tokens in this sequence's KV cells, by position
    active: Active | None = None
    reply_at: int = 0  # where the last request's answer starts in `kv` (its prompt's length)
