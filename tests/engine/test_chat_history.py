"""A chat's next turn on the real model: it sends its history back (the earlier question and the
answer as received), and the engine starts from the cells that history left, in its slot or saved
to host memory when another request took the slot, prefilling only the new question. The answer
is the one a cold prefill gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_loop import on_loop, start_engine, stop_engine
from near_tie import assert_same_or_near_tie

from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import EngineConfig, Finished, GenerationRequest, SamplingParams

GREEDY = SamplingParams(temperature=0.0)
SYSTEM = "You are a concise assistant for a small bakery. Answer in two short sentences. " * 2
OTHER_SYSTEM = "You translate the user's text into plain French and add nothing else. " * 2
# Retokenising the answer's text may merge its last token or two differently.
SLACK = 2


def start(layout: str, slots: int) -> HiveEngine:
    config = EngineConfig(model_path=embedded_model_path(), slots=slots, n_ctx=4096 * slots, kv_cache=layout)
    return start_engine(config)


@pytest.fixture(params=["split", "unified"])
def layout(request) -> str:
    return request.param


@pytest.fixture
def one_slot(layout: str) -> Iterator[HiveEngine]:
    eng = start(layout, slots=1)
    yield eng
    stop_engine(eng)


def generate(eng: HiveEngine, tokens: list[int], max_tokens: int = 24) -> tuple[str, Finished]:
    async def go() -> tuple[str, Finished]:
        g = eng.submit(GenerationRequest(prompt_tokens=tokens, max_tokens=max_tokens, sampling=GREEDY))
        text = "".join([piece async for piece in g])
        assert g.finished is not None
        return text, g.finished

    return on_loop(eng, go())


def chat(eng: HiveEngine, turns: list[tuple[str, str]]) -> list[int]:
    return eng.tokenize(eng.render_chat(turns))


def history_cells(eng: HiveEngine, first_prompt: list[int], first: Finished) -> int:
    """The cells the first turn left for the second to reuse: split keeps the answer, unified the prompt."""
    return len(first_prompt) + (len(first.tokens) if eng.status().kv.layout == "split" else 0)


def test_the_next_turn_prefills_only_the_new_question(one_slot: HiveEngine) -> None:
    eng = one_slot
    question = "What bread sells best in winter?"
    first_prompt = chat(eng, [("system", SYSTEM), ("user", question)])
    answer, first = generate(eng, first_prompt, max_tokens=32)
    second_prompt = chat(
        eng, [("system", SYSTEM), ("user", question), ("assistant", answer), ("user", "And in summer?")]
    )
    assert second_prompt[: len(first_prompt)] == first_prompt
    _, second = generate(eng, second_prompt)
    reused = history_cells(eng, first_prompt, first)
    assert reused - SLACK <= second.cached_tokens <= reused
    fresh = start(eng.status().kv.layout, slots=1)  # the same turn with nothing cached
    try:
        _, cold = generate(fresh, second_prompt)
        assert cold.cached_tokens == 0
        assert_same_or_near_tie(fresh, second_prompt, cold, second)
    finally:
        stop_engine(fresh)


def test_a_chat_pushed_out_of_its_slot_comes_back_from_host_memory(one_slot: HiveEngine) -> None:
    eng = one_slot
    profile = eng._scheduler.stats.profile  # type: ignore[union-attr]
    question = "Which cake keeps longest?"
    first_prompt = chat(eng, [("system", SYSTEM), ("user", question)])
    answer, _ = generate(eng, first_prompt, max_tokens=32)
    # Another caller takes the only slot. Nobody has come back to a chat yet (a fresh engine, as under
    # one-off traffic), so the first chat's cells are not copied, only its tokens remembered.
    greeting = chat(eng, [("system", OTHER_SYSTEM), ("user", "Good morning, how are you?")])
    other_answer, other = generate(eng, greeting)
    assert other.cached_tokens < 8  # the chat template's opening at most
    assert profile.saves == 0
    # Its next turn prefills its history again, once, and is noticed: from now on chats are kept,
    # starting with the other caller's, which this turn cuts.
    _, second = generate(
        eng, chat(eng, [("system", SYSTEM), ("user", question), ("assistant", answer), ("user", "Why?")])
    )
    assert second.cached_tokens < 8
    assert profile.saves == 1
    # So the other caller's next turn comes back from host memory.
    _, again = generate(
        eng,
        chat(
            eng,
            [
                ("system", OTHER_SYSTEM),
                ("user", "Good morning, how are you?"),
                ("assistant", other_answer),
                ("user", "Bien?"),
            ],
        ),
    )
    reused = history_cells(eng, greeting, other)
    assert reused - SLACK <= again.cached_tokens <= reused
    # And the first chat's, which that cut in turn: the same question again starts from its last token.
    second_prompt = chat(eng, [("system", SYSTEM), ("user", question), ("assistant", answer), ("user", "Why?")])
    _, third = generate(eng, second_prompt)
    assert third.cached_tokens == len(second_prompt) - 1
