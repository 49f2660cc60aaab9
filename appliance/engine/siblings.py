"""Sibling choices (OpenAI's n): a request's other generations, each in a slot of its own, wait for
the first one's prompt; once it is in, each gets a copy of its cells and samples its first token
from the same logits row (llama-server's child tasks do the same)."""

from __future__ import annotations

from appliance.engine.interface import Generation, SamplingParams
from appliance.engine.native.llama import Context, Model
from appliance.engine.prefix_cache import PrefixCache
from appliance.engine.sampling import Sampler, request_sampler
from appliance.engine.slots import Active, Slot
from appliance.engine.text import TextStream


def request_samplers(model: Model, sampling: SamplingParams, n: int) -> list[Sampler]:
    """One sampler per choice; ValueError (a bad grammar) with none left open."""
    samplers: list[Sampler] = []
    try:
        for choice in range(n):
            samplers.append(request_sampler(model, sampling, choice))
    except ValueError:
        for sampler in samplers:
            sampler.close()
        raise
    return samplers


def seat(
    parent: Active,
    dest: Slot,
    gens: list[Generation],
    samplers: list[Sampler],
    free: list[Slot],
    ctx: Context,
    prefixes: PrefixCache,
) -> list[Slot]:
    """Each sibling (`gens` after the first, with their samplers) in a free slot other than `dest`,
    whose history is kept in host memory first where worth it; returns their slots."""
    req = parent.request
    seated = []
    for gen, sampler, slot in zip(gens, samplers, [s for s in free if s is not dest], strict=False):
        prefixes.keep_conversation(slot)  # what it held, for that chat's next turn
        ctx.seq_rm(slot.seq)
        slot.kv, slot.adapter = [], parent.adapter
        sibling = Active(
            req,
            gen,
            sampler,
            TextStream(req.stop, req.stop_rule),
            0,
            parent.cached,
            req.max_tokens,
            fork_from=dest,
            adapter=parent.adapter,
        )
        slot.active = sibling
        parent.children.append((slot, sibling))
        seated.append(slot)
    return seated


def fork(slot: Slot, parent: Active, ctx: Context) -> list[tuple[Slot, Active, bool]]:
    """The prompt is in `slot` now: copy its cells to each sibling still waiting (not those cancelled
    meanwhile); each with whether the KV cache had room for it."""
    n = len(parent.request.prompt_tokens)
    children = [(s, c) for s, c in parent.children if s.active is c]
    parent.children = []
    copied = ctx.copy_prefix_to(slot.seq, [s.seq for s, _ in children], n)
    forked = []
    for (child_slot, child), ok in zip(children, copied, strict=True):
        child_slot.kv = list(parent.request.prompt_tokens) if ok else []
        if ok:
            child.done, child.fork_from = n, None
        forked.append((child_slot, child, ok))
    return forked
