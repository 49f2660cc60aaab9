"""What one decode step holds, and in which batch rows: each generating request's next token with
the prompt-lookup draft tokens worth verifying, then chunks of prompt for requests still
prefilling. The scheduler decodes the batch and samples the rows this plan names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from appliance.engine.native.llama import Batch
from appliance.engine.slots import Slot
from appliance.engine.speculative.drafting import StepCosts, choose

# Most draft tokens a request's lookup proposes per step; the draft policy decides how many are used.
MAX_DRAFT = 8


@dataclass
class StepPlan:
    # (slot, batch index of the first logits row, draft tokens verified at the following rows)
    to_sample: list[tuple[Slot, int, list[int]]] = field(default_factory=list)
    # The tokens each slot's KV sequence holds once the step has decoded.
    added: list[tuple[Slot, list[int]]] = field(default_factory=list)
    generated: int = 0
    prompt_tokens: int = 0


def choose_drafts(
    generating: Sequence[Slot], costs: StepCosts, capacity: int, context_length: int
) -> dict[int, list[int]]:
    """Draft tokens to verify, by sequence, for every generating slot (most have none): the lookup's
    guesses, of which the draft policy keeps the ones worth a batch row."""
    proposed: dict[int, list[int]] = {}
    proposals: list[tuple[int, int, float]] = []
    for slot in generating:
        a = slot.active
        assert a is not None
        if a.lookup is not None:
            room = min(a.request.max_tokens - a.completion - 1, context_length - len(slot.kv) - 2)
            if guess := a.lookup.draft(min(MAX_DRAFT, room)):
                proposed[slot.seq] = guess
                proposals.append((slot.seq, len(guess), a.acceptance.rate))
    use = choose(costs, len(generating), proposals, capacity - len(generating)) if proposals else {}
    return {slot.seq: proposed.get(slot.seq, [])[: use.get(slot.seq, 0)] for slot in generating}


def prompt_budget(capacity: int, decoding: int, prefill_chunk: int) -> int:
    """Rows a step gives prompt chunks: what decoding leaves of the batch, up to prefill_chunk.

    A small chunk gives the first requests of a burst their first token steps before the last; the
    whole batch (the default) keeps a burst in lockstep, since a smaller chunk trades tokens/s and p95
    latency for the first requests' time to first token: those that start early come back sooner and
    their prompts slow the others' decode steps (docs/decisions/006-step-shape.md). Prompts keep at
    least a quarter of the chunk however many rows decode (and a row at least)."""
    return min(capacity - decoding, max(prefill_chunk - decoding, 1 + prefill_chunk // 4))


def take_prompt_chunks(admitted_order: Sequence[Slot], budget: int) -> dict[int, tuple[int, list[int]]]:
    """The next chunk of each prefilling request's prompt, in arrival order, within `budget` rows, by
    sequence: (its first prompt index, its tokens). Marks them done."""
    chunks: dict[int, tuple[int, list[int]]] = {}
    for slot in admitted_order:
        a = slot.active
        if a is None or not a.prefilling or a.fork_from is not None or a.waits_for is not None or budget <= 0:
            continue
        end = a.done + budget
        if a.save_at is not None:
            end = min(end, a.save_at)  # stop at the preamble, to save it after this step
        chunk = a.feed[a.done : end]
        chunks[slot.seq] = (a.done, chunk)
        a.done += len(chunk)
        budget -= len(chunk)
    return chunks


def fill_batch(
    batch: Batch,
    slots: Sequence[Slot],
    drafts: dict[int, list[int]],
    chunks: dict[int, tuple[int, list[int]]],
    seq_of: Callable[[int], int],
) -> StepPlan:
    """Put the generating slots' tokens (`drafts` has an entry for each) and the prompt chunks into
    `batch`, `slots` being every slot with either; a slot's rows go in sequence `seq_of(slot.seq)`
    (the decode target's: seams.py)."""
    plan = StepPlan()
    # Rows go in sequence order: with a split KV cache llama.cpp puts only consecutive sequence
    # ids in one ubatch (one pass over the weights), so rows in arrival order cost a batch of 8
    # several passes (docs/decisions/006-step-shape.md).
    for slot in sorted(slots, key=lambda s: s.seq):
        a = slot.active
        assert a is not None
        pos = len(slot.kv)
        seq = seq_of(slot.seq)
        if slot.seq in drafts:
            draft = drafts[slot.seq]
            first = batch.add(a.last, pos, seq, True)
            for j, tok in enumerate(draft):
                batch.add(tok, pos + 1 + j, seq, True)
            plan.to_sample.append((slot, first, draft))
            plan.added.append((slot, [a.last]))
            plan.generated += 1
            continue
        start, chunk = chunks[slot.seq]
        last_index = len(a.feed) - 1
        for j, tok in enumerate(chunk):
            last = start + j == last_index
            idx = batch.add(tok, pos + j, seq, last)
            if last:
                plan.to_sample.append((slot, idx, []))
        plan.added.append((slot, chunk))
        plan.prompt_tokens += len(chunk)
    return plan
