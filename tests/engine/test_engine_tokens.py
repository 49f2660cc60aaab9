"""The engine's token-level contract on the real model: log-probabilities, logit bias, n choices
from one prefill, grammars (JSON, schemas, labels) and tool-aware chat templates."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator

import pytest
from engine_loop import on_loop, start_engine, stop_engine

from appliance.core.errors import InvalidRequest
from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.grammars import JSON_OBJECT, choice_grammar
from appliance.engine.interface import Chunk, EngineConfig, GenerationRequest, SamplingParams, Turn


@pytest.fixture(scope="module")
def engine() -> Iterator[HiveEngine]:
    eng = start_engine(EngineConfig(model_path=embedded_model_path(), slots=4, n_ctx=4096))
    yield eng
    stop_engine(eng)


run = on_loop


def chat(engine: HiveEngine, user: str, system: str = "You are a helpful assistant.") -> list[int]:
    return engine.tokenize(engine.render_chat([("system", system), ("user", user)]))


async def collect(engine: HiveEngine, request: GenerationRequest, n: int = 1) -> list[tuple[str, list[Chunk]]]:
    async def one(g):
        chunks = [c async for c in g.chunks()]
        return "".join(c.text for c in chunks), chunks

    return await asyncio.gather(*(one(g) for g in engine.submit_many(request, n)))


def test_logprobs_come_with_every_token_and_its_alternatives(engine: HiveEngine) -> None:
    tokens = chat(engine, "Name a colour.")
    for stream in (True, False):
        request = GenerationRequest(
            prompt_tokens=tokens,
            max_tokens=8,
            sampling=SamplingParams(temperature=0.0, logprobs=3),
            stream=stream,
        )
        [(text, chunks)] = run(engine, collect(engine, request))
        infos = [t for c in chunks for t in c.tokens]
        assert len(infos) >= 1 and b"".join(t.piece for t in infos).decode().startswith(text[:1])
        for info in infos:
            assert info.logprob <= 0 and math.isfinite(info.logprob)
            assert len(info.top) == 3
            assert [lp for _, _, lp in info.top] == sorted((lp for _, _, lp in info.top), reverse=True)
            # greedy: the chosen token is the most likely one
            assert info.top[0][0] == info.id and abs(info.top[0][2] - info.logprob) < 1e-4
    plain = GenerationRequest(prompt_tokens=tokens, max_tokens=4, sampling=SamplingParams(temperature=0.0))
    [(_, chunks)] = run(engine, collect(engine, plain))
    assert all(c.tokens == [] for c in chunks)


def test_logit_bias_bans_and_forces_tokens(engine: HiveEngine) -> None:
    tokens = chat(engine, "Say hello.")
    greedy = GenerationRequest(prompt_tokens=tokens, max_tokens=6, sampling=SamplingParams(temperature=0.0))
    g = engine.submit(greedy)
    run(engine, collect_one(g))
    first = g.finished.tokens[0]
    banned = GenerationRequest(
        prompt_tokens=tokens, max_tokens=6, sampling=SamplingParams(temperature=0.0, logit_bias={first: -100})
    )
    g2 = engine.submit(banned)
    run(engine, collect_one(g2))
    assert first not in g2.finished.tokens
    forced_token = engine.tokenize(" banana", special=False)[-1]
    forced = GenerationRequest(
        prompt_tokens=tokens, max_tokens=3, sampling=SamplingParams(temperature=0.0, logit_bias={forced_token: 100})
    )
    g3 = engine.submit(forced)
    run(engine, collect_one(g3))
    assert g3.finished.tokens == [forced_token] * 3


async def collect_one(g) -> str:
    return "".join([piece async for piece in g])


def test_n_choices_share_one_prefill(engine: HiveEngine) -> None:
    tokens = chat(engine, "Write a word that rhymes with cat.", system="You are a poet. " * 20)
    request = GenerationRequest(
        prompt_tokens=tokens, max_tokens=12, sampling=SamplingParams(temperature=1.0, seed=7), stream=True
    )
    run(engine, collect(engine, request, n=1))
    # Now the prompt is cached. (Decoding its last token alone or in a prefill batch rounds the
    # logits differently, so a seed repeats its text for the same cache state, as with llama-server.)
    results = run(engine, collect(engine, request, n=4))
    assert len(results) == 4 and all(text for text, _ in results)
    # the same seed gives the same four choices again, and the choices differ among themselves
    again = run(engine, collect(engine, request, n=4))
    assert [t for t, _ in again] == [t for t, _ in results]
    assert len({t for t, _ in results}) > 1
    greedy = GenerationRequest(prompt_tokens=tokens, max_tokens=12, sampling=SamplingParams(temperature=0.0))
    texts = [t for t, _ in run(engine, collect(engine, greedy, n=3))]
    assert texts[0] == texts[1] == texts[2]


def test_n_choices_prefill_the_prompt_once(engine: HiveEngine) -> None:
    tokens = chat(engine, "Count to three.", system="Unique system prompt for the prefill count test. " * 10)
    profile = engine._scheduler.stats.profile  # type: ignore[union-attr]
    prompt_before = profile.prompt
    request = GenerationRequest(prompt_tokens=tokens, max_tokens=4, sampling=SamplingParams(temperature=0.0))
    run(engine, collect(engine, request, n=3))
    assert profile.prompt - prompt_before <= len(tokens)


def test_n_beyond_the_slots_is_refused(engine: HiveEngine) -> None:
    request = GenerationRequest(prompt_tokens=chat(engine, "hi"), max_tokens=2)
    with pytest.raises(InvalidRequest, match="n must be between 1 and 4"):
        engine.submit_many(request, 5)


def test_json_object_grammar_always_gives_json(engine: HiveEngine) -> None:
    tokens = chat(engine, "Describe a cat in JSON.")
    request = GenerationRequest(
        prompt_tokens=tokens, max_tokens=300, sampling=SamplingParams(temperature=0.8, seed=1, grammar=JSON_OBJECT)
    )
    generations = engine.submit_many(request, 3)
    texts = [run(engine, collect_one(g)) for g in generations]
    finished = [g.finished.finish_reason for g in generations]
    # Every answer that ended by itself is JSON; one cut by max_tokens is a JSON prefix (as with OpenAI).
    assert "stop" in finished, finished
    for text, reason in zip(texts, finished, strict=True):
        assert text.lstrip().startswith("{")
        if reason == "stop":
            assert isinstance(json.loads(text), dict)


def test_schema_grammar_output_validates(engine: HiveEngine) -> None:
    # Bounded strings and arrays: the grammar also keeps the answer short enough to finish.
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }
    grammar = engine.json_schema_grammar(schema, param="response_format.json_schema.schema")
    tokens = chat(engine, "Invent a person.")
    request = GenerationRequest(
        prompt_tokens=tokens, max_tokens=200, sampling=SamplingParams(temperature=0.7, seed=3, grammar=grammar)
    )
    generations = engine.submit_many(request, 2)
    for g in generations:
        value = json.loads(run(engine, collect_one(g)))
        assert g.finished.finish_reason == "stop"
        assert set(value) == {"name", "age", "tags"}
        assert isinstance(value["name"], str) and len(value["name"]) <= 20 and isinstance(value["age"], int)
        assert len(value["tags"]) <= 3 and all(isinstance(t, str) and len(t) <= 10 for t in value["tags"])


def test_unenforceable_schemas_and_bad_grammars_are_400s(engine: HiveEngine) -> None:
    with pytest.raises(InvalidRequest, match="'not'") as info:
        engine.json_schema_grammar({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, param="p")
    assert info.value.param == "p"
    with pytest.raises(InvalidRequest, match="uniqueItems"):
        engine.json_schema_grammar({"type": "array", "uniqueItems": True}, param="p")
    with pytest.raises(InvalidRequest):
        engine.json_schema_grammar({"type": "nonsense"}, param="p")
    with pytest.raises(InvalidRequest, match="grammar"):
        engine.check_grammar("root ::= [unclosed")
    engine.check_grammar(JSON_OBJECT)


def test_choice_grammar_gives_exactly_one_label(engine: HiveEngine) -> None:
    labels = ["billing", "technical", "account", "other"]
    tokens = chat(engine, "My payment failed and I was charged twice. Category?")
    request = GenerationRequest(
        prompt_tokens=tokens,
        max_tokens=10,
        sampling=SamplingParams(temperature=1.0, seed=5, grammar=choice_grammar(labels)),
    )
    for text, _ in run(engine, collect(engine, request, n=3)):
        assert text in labels


def test_tool_turns_reach_the_chat_template(engine: HiveEngine) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    prompt = engine.render_chat(
        [
            Turn(role="user", content="Weather in Oslo?"),
            Turn(role="assistant", content=None, tool_calls=[call]),
            Turn(role="tool", content='{"temp": 3}', tool_call_id="call_1"),
        ]
    )
    assert "Weather in Oslo?" in prompt and '{"temp": 3}' in prompt


def test_the_shared_preamble_runs_to_the_next_turns_header(engine: HiveEngine) -> None:
    # What conversations after one system prompt share includes the user turn's header, so the
    # prefix cache saves it too and no request prefills those tokens again.
    from appliance.serving.prompting import Prompter

    prompter = Prompter(engine, timeout_s=30)
    preamble = [("system", "You are terse.")]
    a, shared_a = prompter.tokenize_chat(preamble, [("user", "Hello there")])
    b, shared_b = prompter.tokenize_chat(preamble, [Turn(role="user", content="Something else entirely")])
    common = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    system_only = len(engine.tokenize(engine.render_chat(preamble, add_generation_prompt=False)))
    assert shared_a == shared_b == common > system_only
