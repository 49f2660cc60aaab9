"""The solo lane on the real model: a request running alone moves to the lane's context after its
prompt, decodes there, and moves back, so its slot holds its whole history as if it had never left.

The lane's model here is the served file itself (on a CPU where the optimised copy's one-row step is
slower, `serve` puts the original there; the moves are the same), so an answer decoded in the lane
must be the one the main context gives: the same tokens, or parted only at a near tie."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_loop import on_loop, start_engine, stop_engine
from near_tie import assert_same_or_near_tie

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, Finished, GenerationRequest, SamplingParams
from appliance.engine.seams import MainContext
from appliance.engine.tuning.host_pages import file_ranges
from appliance.engine.tuning.solo_lane import MIN_TOKENS_LEFT, UNLOAD_AFTER_S, SoloLane

GREEDY = SamplingParams(temperature=0.0)
SYSTEM = "You are a concise assistant for a small bakery. Answer in two short sentences."


def start(solo: str | None) -> HiveEngine:
    # Split streams, the CPU default: a finished slot keeps its answer too, for the chat's next turn.
    return start_engine(
        EngineConfig(model_path=embedded_model_path(), solo_model_path=solo, slots=4, n_ctx=4 * 2048, kv_cache="split")
    )


@pytest.fixture(scope="module")
def lane() -> Iterator[HiveEngine]:
    eng = start(embedded_model_path())
    yield eng
    stop_engine(eng)


@pytest.fixture(scope="module")
def plain() -> Iterator[HiveEngine]:
    eng = start(None)
    yield eng
    stop_engine(eng)


def prompt(eng: HiveEngine, question: str, *history: tuple[str, str]) -> list[int]:
    return eng.tokenize(eng.render_chat([("system", SYSTEM), *history, ("user", question)]))


def run(eng: HiveEngine, *requests: GenerationRequest) -> list[tuple[str, Finished]]:
    """The requests submitted together; each one's text and Finished."""

    async def one(req: GenerationRequest) -> tuple[str, Finished]:
        g = eng.submit(req)
        text = "".join([piece async for piece in g])
        assert g.finished is not None
        return text, g.finished

    async def go() -> list[tuple[str, Finished]]:
        return list(await asyncio.gather(*(one(r) for r in requests)))

    return on_loop(eng, go())


def stats(eng: HiveEngine) -> SoloLane:
    assert eng._scheduler is not None and isinstance(eng._scheduler.target, SoloLane)
    return eng._scheduler.target


def test_a_lone_request_decodes_in_the_lane_and_answers_as_the_main_context_does(
    lane: HiveEngine, plain: HiveEngine
) -> None:
    tokens = prompt(lane, "What bread sells best in winter?")
    before = stats(lane).stats.entries
    [(_, moved)] = run(lane, GenerationRequest(prompt_tokens=tokens, max_tokens=32, sampling=GREEDY))
    [(_, stayed)] = run(plain, GenerationRequest(prompt_tokens=tokens, max_tokens=32, sampling=GREEDY))
    assert stats(lane).stats.entries == before + 1
    assert stats(lane).holding is None  # back in the main context once finished
    assert moved.finish_reason == stayed.finish_reason
    line = next(line for line in lane.status().tuning if line.name == "solo_lane")  # the hive status says so
    assert line.on and "lone requests moved there" in line.state and lane.status().model.solo_file
    assert_same_or_near_tie(plain, tokens, stayed, moved)


def test_the_next_turn_finds_the_whole_history_the_lane_decoded(lane: HiveEngine, plain: HiveEngine) -> None:
    """The answer was decoded in the lane; the chat's next turn must find its cells in the slot."""
    question = "Which cake keeps longest?"
    first = prompt(lane, question)
    entries = stats(lane).stats.entries
    [(answer, done)] = run(lane, GenerationRequest(prompt_tokens=first, max_tokens=24, sampling=GREEDY))
    assert stats(lane).stats.entries == entries + 1 and done.completion_tokens > 1
    second = prompt(lane, "And the shortest?", ("user", question), ("assistant", answer))
    req = GenerationRequest(prompt_tokens=second, max_tokens=24, sampling=GREEDY)
    [(_, next_turn)] = run(lane, req)
    # Retokenising the answer's text may merge its last token or two differently.
    assert next_turn.cached_tokens >= len(first) + len(done.tokens) - 2
    # Those cells hold what a prefill of the history gives: the same answer as the other engine's.
    [(_, elsewhere)] = run(plain, req)
    assert elsewhere.cached_tokens < len(first) + len(done.tokens) - 2
    assert_same_or_near_tie(plain, second, elsewhere, next_turn)


def test_a_second_request_sends_the_first_back_and_both_answer_as_alone(lane: HiveEngine, plain: HiveEngine) -> None:
    """The first request enters the lane, the second arrives mid-answer: the first moves back and the
    two decode together in the main context; neither answer changes."""
    a = GenerationRequest(prompt_tokens=prompt(lane, "Name three breads."), max_tokens=40, sampling=GREEDY)
    b = GenerationRequest(prompt_tokens=prompt(lane, "Do you sell coffee?"), max_tokens=16, sampling=GREEDY)

    async def staggered() -> list[Finished]:
        ga = lane.submit(a)
        pieces = 0
        async for _ in ga:
            pieces += 1
            if pieces == 10:  # well inside the lane by now
                break
        assert stats(lane).holding is not None
        gb = lane.submit(b)
        async for _ in ga:
            pass
        async for _ in gb:
            pass
        assert ga.finished is not None and gb.finished is not None
        return [ga.finished, gb.finished]

    entries = stats(lane).stats.entries
    got = on_loop(lane, staggered())
    assert stats(lane).stats.entries == entries + 1  # b was admitted beside a: it never moves
    for req, moved in zip((a, b), got, strict=True):
        [(_, alone)] = run(plain, req)
        assert moved.finish_reason == alone.finish_reason, moved.error
        assert_same_or_near_tie(plain, req.prompt_tokens, alone, moved)


def test_log_probabilities_come_from_the_lane_context(lane: HiveEngine, plain: HiveEngine) -> None:
    sampling = SamplingParams(temperature=0.0, logprobs=2)
    tokens = prompt(lane, "Is rye bread sour?")
    req = GenerationRequest(prompt_tokens=tokens, max_tokens=16, sampling=sampling)

    async def chunks(eng: HiveEngine) -> list:
        g = eng.submit(req)
        return [info async for chunk in g.chunks() for info in chunk.tokens]

    moved = on_loop(lane, chunks(lane))
    stayed = on_loop(plain, chunks(plain))
    assert [t.id for t in moved] == [t.id for t in stayed]
    for m, s in zip(moved, stayed, strict=True):
        assert math.isclose(m.logprob, s.logprob, abs_tol=1e-3)
        assert [t[0] for t in m.top] == [t[0] for t in s.top]


def test_several_requests_give_the_lane_memory_back(lane: HiveEngine) -> None:
    questions = ["Any gluten-free loaves?", "When do you open?", "Do you deliver?"]
    reqs = [GenerationRequest(prompt_tokens=prompt(lane, q), max_tokens=8, sampling=GREEDY) for q in questions]
    run(lane, reqs[0])  # alone: the lane is used
    assert stats(lane)._in_memory
    run(lane, *reqs)  # together: its weights and cells are given back
    assert not stats(lane)._in_memory


def test_a_solo_model_that_cannot_load_leaves_the_copy_serving(tmp_path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    eng = start(str(bad))
    try:
        assert eng._scheduler is not None and isinstance(eng._scheduler.target, MainContext)
        [(_, done)] = run(eng, GenerationRequest(prompt_tokens=prompt(eng, "Hello?"), max_tokens=4, sampling=GREEDY))
        assert done.finish_reason in ("length", "stop") and done.completion_tokens > 0
        line = next(line for line in eng.status().tuning if line.name == "solo_lane")
        assert not line.on and line.state.startswith("off: could not load broken.gguf")
    finally:
        stop_engine(eng)


def test_a_step_that_fails_in_the_lane_fails_its_request_and_the_engine_goes_on(lane: HiveEngine) -> None:
    lane_ctx = stats(lane).lane
    calls: list[int] = []

    def fails_once(batch):  # the third step there: llama.cpp's error code for a failed decode
        calls.append(1)
        return -1 if len(calls) == 3 else type(lane_ctx).decode(lane_ctx, batch)

    lane_ctx.decode = fails_once  # type: ignore[method-assign]
    try:
        [(_, failed)] = run(lane, GenerationRequest(prompt_tokens=prompt(lane, "Hi!"), max_tokens=16, sampling=GREEDY))
    finally:
        del lane_ctx.decode
    assert len(calls) >= 3 and failed.finish_reason == "error" and stats(lane).holding is None
    [(_, ok)] = run(lane, GenerationRequest(prompt_tokens=prompt(lane, "Hello?"), max_tokens=12, sampling=GREEDY))
    assert ok.finish_reason in ("length", "stop") and ok.completion_tokens > 0


def test_a_busy_spell_unloads_the_lane_and_a_lone_request_brings_it_back(lane: HiveEngine, plain: HiveEngine) -> None:
    solo = stats(lane)
    path = os.path.realpath(embedded_model_path())

    def mappings() -> int:  # the served model's and, while loaded, the lane's (the same file here)
        return len(file_ranges(Path("/proc/self/maps").read_text(), path))

    questions = ["Any rye today?", "Is there parking?", "Can I order a cake?"]
    reqs = [GenerationRequest(prompt_tokens=prompt(lane, q), max_tokens=8, sampling=GREEDY) for q in questions]
    loaded = mappings()
    solo._unload_after_s = 0.0  # at the second busy step (5 s of them in serving)
    try:
        run(lane, *reqs)
    finally:
        solo._unload_after_s = UNLOAD_AFTER_S
    assert solo.parts is None and mappings() < loaded
    unloads, loads, entries = solo.stats.unloads, solo.stats.loads, solo.stats.entries
    tokens = prompt(lane, "Which loaf keeps longest?")
    request = GenerationRequest(prompt_tokens=tokens, max_tokens=24, sampling=GREEDY)
    [(_, first)] = run(lane, request)  # starts the load; decodes on the main context meanwhile
    deadline = time.monotonic() + 30
    while solo.parts is None and time.monotonic() < deadline:
        run(lane, GenerationRequest(prompt_tokens=prompt(lane, "Hi"), max_tokens=MIN_TOKENS_LEFT + 1, sampling=GREEDY))
    assert solo.parts is not None and not solo.broken and mappings() == loaded
    [(_, moved)] = run(lane, request)
    [(_, stayed)] = run(plain, request)
    assert solo.stats.unloads == unloads and solo.stats.loads == loads + 1
    assert solo.stats.entries > entries
    assert_same_or_near_tie(plain, tokens, stayed, first)
    assert_same_or_near_tie(plain, tokens, stayed, moved)
