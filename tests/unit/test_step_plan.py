"""What a step holds: prompt chunks within the budget and at a preamble's end, rows in sequence
order (one pass over the weights with split KV streams), the lane's slot in the lane's sequence,
and logits only where a token is sampled. The engine tests run the same plan on the real model."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace

import pytest

from appliance.engine.interface import GenerationRequest
from appliance.engine.native.llama import Batch
from appliance.engine.seams import MainContext
from appliance.engine.slots import Active, Slot
from appliance.engine.speculative.drafting import StepCosts
from appliance.engine.step_plan import choose_drafts, fill_batch, prompt_budget, take_prompt_chunks
from appliance.engine.tuning.solo_lane import LANE_SEQ, SoloLane


def slot(seq: int, *, prompt: int, done: int, completion: int = 0, save_at: int | None = None) -> Slot:
    request = GenerationRequest(prompt_tokens=[100 + i for i in range(prompt)], max_tokens=16)
    active = Active(request, None, None, None, done, 0, prompt + 16, completion=completion, save_at=save_at)  # type: ignore[arg-type]
    active.last = 7
    return Slot(seq=seq, kv=list(range(done + completion)), active=active)


@pytest.fixture
def batch() -> Iterator[Batch]:
    b = Batch(64)
    yield b
    b.close()


def test_the_budget_leaves_prompts_a_quarter_of_the_chunk_however_many_rows_decode() -> None:
    assert prompt_budget(512, 8, 512) == 504  # the default chunk: the whole batch
    assert prompt_budget(512, 8, 64) == 56
    assert prompt_budget(512, 60, 64) == 17  # 1 + 64 // 4
    assert prompt_budget(64, 60, 64) == 4  # never past the batch's capacity


def test_chunks_go_in_arrival_order_within_the_budget_and_stop_at_a_preamble() -> None:
    first, second, third = (
        slot(5, prompt=30, done=0),
        slot(1, prompt=30, done=10, save_at=20),
        slot(2, prompt=9, done=0),
    )
    chunks = take_prompt_chunks([first, second, third], 38)
    assert chunks == {5: (0, list(range(100, 130))), 1: (10, list(range(110, 118)))}
    assert first.active is not None and first.active.done == 30
    assert second.active is not None and second.active.done == 18  # 8 of the budget were left
    assert 2 not in chunks  # nothing left for the third
    preamble = slot(3, prompt=30, done=10, save_at=20)
    assert take_prompt_chunks([preamble], 100) == {3: (10, list(range(110, 120)))}


def test_rows_go_in_sequence_order_with_logits_where_a_token_is_sampled(batch: Batch) -> None:
    generating = [slot(6, prompt=4, done=4, completion=2), slot(0, prompt=4, done=4, completion=1)]
    prefilling = slot(3, prompt=5, done=0)
    drafts = {6: [11, 12], 0: []}
    chunks = take_prompt_chunks([prefilling], 64)
    plan = fill_batch(batch, [*generating, prefilling], drafts, chunks, MainContext().seq_of)
    seqs = [batch.raw.seq_id[i][0] for i in range(batch.n)]
    assert seqs == [0, 3, 3, 3, 3, 3, 6, 6, 6]
    assert [batch.raw.pos[i] for i in range(batch.n)] == [5, 0, 1, 2, 3, 4, 6, 7, 8]
    assert [bool(batch.raw.logits[i]) for i in range(batch.n)] == [True, False, False, False, False, True] + [True] * 3
    assert [(s.seq, first, draft) for s, first, draft in plan.to_sample] == [(0, 0, []), (3, 5, []), (6, 6, [11, 12])]
    assert (plan.generated, plan.prompt_tokens) == (2, 5)
    assert [(s.seq, tokens) for s, tokens in plan.added] == [(0, [7]), (3, [100, 101, 102, 103, 104]), (6, [7])]


def test_the_lanes_slot_decodes_in_the_lanes_sequence(batch: Batch) -> None:
    lone = slot(4, prompt=4, done=4, completion=3)
    fill_batch(batch, [lone], {4: []}, {}, partial(SoloLane.seq_of, SimpleNamespace(holding=lone.seq)))  # type: ignore[arg-type]
    assert batch.n == 1 and batch.raw.seq_id[0][0] == LANE_SEQ and batch.raw.pos[0] == 7


def test_drafts_come_from_the_lookup_where_extra_rows_are_nearly_free() -> None:
    plain = slot(0, prompt=4, done=4)
    looking = slot(1, prompt=4, done=4)
    assert looking.active is not None
    looking.active.lookup = type("Lookup", (), {"draft": lambda self, n: [5, 6, 7][:n]})()  # type: ignore[assignment]
    flat = StepCosts()  # a step of any size costs what a one-row step does (a GPU, say)
    for size in range(1, 10):
        flat.observe(size, 0.01)
    assert choose_drafts([plain, looking], flat, capacity=64, context_length=2048) == {0: [], 1: [5, 6, 7]}
    dear = StepCosts()  # every row costs a one-row step: no guess pays
    for size in range(1, 10):
        dear.observe(size, 0.01 * size)
    assert choose_drafts([plain, looking], dear, capacity=64, context_length=2048) == {0: [], 1: []}
    room = slot(1, prompt=4, done=4, completion=14)  # 2 tokens to go: 1 guess at most
    room.active.lookup = looking.active.lookup  # type: ignore[union-attr]
    assert choose_drafts([room], flat, capacity=64, context_length=2048) == {1: [5]}
