"""POST /v1/responses without a model (a fake engine whose template thinks), through the official openai
SDK: a thinking model's <think> block as a typed reasoning item before the answer, whole and streamed
(reasoning_text events), its tokens in usage, the item "incomplete" where max_output_tokens cut it; the
message text's logprobs (its tokens only, not the block's); `include`, `truncation` and `reasoning` as
an OpenAI client sends them, every bad value a 400 naming it; and the rule by which truncation "auto"
drops input items."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from litestar.testing import TestClient
from openai.types.responses import (
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from openai.types.responses.response_output_text import Logprob

from appliance.api import create_app
from appliance.core import protocol as p
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.serving.responses_request import droppable
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

THINKS = "{{ messages }} <think> {{ reasoning }} </think>"
REPLY = "<think>The capital of France is Paris.</think> Paris."


def serve(tmp_path: Path, engine: FakeEngine, **settings: Any) -> Iterator[openai.OpenAI]:
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]
    app = create_app(
        Settings(data_dir=str(tmp_path), **settings), engine=engine, store=store, specialists=load_specialists()
    )
    with TestClient(app, raise_server_exceptions=False) as http:
        yield openai.OpenAI(base_url=f"{http.base_url}/v1", api_key=key, http_client=http, max_retries=0)
    store.close()


@pytest.fixture
def thinking(tmp_path: Path) -> Iterator[openai.OpenAI]:
    yield from serve(tmp_path, FakeEngine(template=THINKS, reply=REPLY))


def test_the_block_is_a_reasoning_item_before_the_message(thinking: openai.OpenAI) -> None:
    r = thinking.responses.create(model="chat", input="What is the capital of France?")
    reasoning_item, message = r.output
    assert isinstance(reasoning_item, ResponseReasoningItem) and reasoning_item.id.startswith("rs_")
    assert reasoning_item.summary == [] and reasoning_item.content
    assert [(c.type, c.text) for c in reasoning_item.content] == [("reasoning_text", "The capital of France is Paris.")]
    assert isinstance(message, ResponseOutputMessage) and r.output_text == "Paris."
    assert r.usage and 0 < r.usage.output_tokens_details.reasoning_tokens <= r.usage.output_tokens
    assert r.truncation == "disabled"


def test_streamed_reasoning_events_parse_and_assemble(thinking: openai.OpenAI) -> None:
    with thinking.responses.stream(model="chat", input="What is the capital of France?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.reasoning_text.delta"]
    assert deltas and all(isinstance(e, ResponseReasoningTextDeltaEvent) for e in deltas)
    [done] = [e for e in events if e.type == "response.reasoning_text.done"]
    assert isinstance(done, ResponseReasoningTextDoneEvent)
    assert done.text == "".join(e.delta for e in deltas) == "The capital of France is Paris."
    # The reasoning item (output 0) opens, streams and closes before the message (output 1) starts.
    kinds = [(e.type, getattr(e, "output_index", None)) for e in events]
    order = [
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.output_text.done", 1),
        ("response.output_item.done", 1),
    ]
    seen = [k for k in kinds if k in order]
    assert [k for i, k in enumerate(seen) if i == 0 or seen[i - 1] != k] == order  # deltas run together
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.type == "response.output_item.added" and isinstance(added.item, ResponseReasoningItem)
    part = next(e for e in events if e.type == "response.content_part.added")
    assert part.type == "response.content_part.added" and part.part.type == "reasoning_text"
    item_done = next(e for e in events if e.type == "response.output_item.done")
    assert item_done.type == "response.output_item.done" and isinstance(item_done.item, ResponseReasoningItem)
    assert item_done.item.content and item_done.item.content[0].text == done.text
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output_text == "Paris."
    assert final.usage and final.usage.output_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_block_cut_off_is_all_reasoning(tmp_path: Path, stream: bool) -> None:
    """A template that opens the block itself, and an answer cut off inside it: incomplete, reasoning only."""
    engine = FakeEngine(template=THINKS, generation_tail="<think>\n", reply="Let me think about", outcome="length")
    for client in serve(tmp_path, engine):
        if stream:
            with client.responses.stream(model="chat", input="hi") as s:
                events = list(s)
            last = events[-1]
            assert last.type == "response.incomplete"
            r = last.response
        else:
            r = client.responses.create(model="chat", input="hi")
        assert r.status == "incomplete" and [o.type for o in r.output] == ["reasoning"]
        assert r.incomplete_details and r.incomplete_details.reason == "max_output_tokens"
        [item] = r.output
        assert isinstance(item, ResponseReasoningItem) and item.content and item.status == "incomplete"
        assert item.content[0].text == "Let me think about"
        assert r.usage and r.usage.output_tokens_details.reasoning_tokens == r.usage.output_tokens


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("reply", "items"),
    [
        ("<think>It is Paris.</think> Paris is the", [("reasoning", "completed"), ("message", "incomplete")]),
        ("<think>It is Paris.</think>", [("reasoning", "completed")]),  # closed, then cut before any text
    ],
    ids=["in-the-text", "after-the-block"],
)
def test_a_cut_after_the_block_leaves_the_block_complete(
    tmp_path: Path, stream: bool, reply: str, items: list[tuple[str, str]]
) -> None:
    engine = FakeEngine(template=THINKS, reply=reply, outcome="length")
    for client in serve(tmp_path, engine):
        if stream:
            with client.responses.stream(model="chat", input="hi") as s:
                events = list(s)
            done = [(e.item.type, e.item.status) for e in events if e.type == "response.output_item.done"]
            assert done == items
            last = events[-1]
            assert last.type == "response.incomplete"
            r = last.response
        else:
            r = client.responses.create(model="chat", input="hi")
        assert r.status == "incomplete" and r.incomplete_details and r.incomplete_details.reason == "max_output_tokens"
        assert [(o.type, o.status) for o in r.output] == items


LOGPROBS: dict[str, Any] = dict(include=["message.output_text.logprobs"], top_logprobs=2)
# The fake engine's tokens are the reply's words; the message is "Paris is the capital.", written by
# the words from " Paris" on (its leading blank follows the block), the block's words are not its.
MESSAGE_TOKENS = [" Paris", " is", " the", " capital."]


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_are_the_message_texts_tokens(tmp_path: Path, stream: bool) -> None:
    engine = FakeEngine(template=THINKS, reply="<think>It is Paris.</think> Paris is the capital.")
    for client in serve(tmp_path, engine):
        if stream:
            with client.responses.stream(model="chat", input="hi", **LOGPROBS) as s:
                events = list(s)
                r = s.get_final_response()
            deltas = [e for e in events if e.type == "response.output_text.delta"]
            assert all(isinstance(e, ResponseTextDeltaEvent) for e in deltas)
            assert [lp.token for e in deltas for lp in e.logprobs] == MESSAGE_TOKENS
            [done] = [e for e in events if e.type == "response.output_text.done"]
            assert isinstance(done, ResponseTextDoneEvent) and [lp.token for lp in done.logprobs] == MESSAGE_TOKENS
            assert all(lp.top_logprobs and len(lp.top_logprobs) == 2 for lp in done.logprobs)
        else:
            r = client.responses.create(model="chat", input="hi", **LOGPROBS)
        assert r.top_logprobs == 2 and r.output_text == "Paris is the capital."
        message = r.output[1]
        assert isinstance(message, ResponseOutputMessage)
        [part] = message.content
        assert part.type == "output_text" and part.logprobs
        assert all(isinstance(lp, Logprob) for lp in part.logprobs)
        assert [lp.token for lp in part.logprobs] == MESSAGE_TOKENS
        # The words are the reply's 4th to 7th tokens, with the fake's logprob -(i+1)/10 each.
        assert [lp.logprob for lp in part.logprobs] == pytest.approx([-0.4, -0.5, -0.6, -0.7])
        assert [lp.bytes for lp in part.logprobs] == [list(t.encode()) for t in MESSAGE_TOKENS]
        assert [[t.token for t in lp.top_logprobs] for lp in part.logprobs] == [["alt0", "alt1"]] * 4


def test_logprobs_only_with_include(tmp_path: Path) -> None:
    """As OpenAI: top_logprobs alone is echoed, and the text's logprobs stay empty."""
    for client in serve(tmp_path, FakeEngine(reply="Paris is the capital.")):
        r = client.responses.create(model="chat", input="hi", top_logprobs=3)
        [message] = r.output
        assert isinstance(message, ResponseOutputMessage) and message.content[0].type == "output_text"
        assert r.top_logprobs == 3 and message.content[0].logprobs == []
        r = client.responses.create(model="chat", input="hi", include=["message.output_text.logprobs"])
        [message] = r.output
        assert isinstance(message, ResponseOutputMessage) and message.content[0].type == "output_text"
        logprobs = message.content[0].logprobs or []
        assert "".join(lp.token for lp in logprobs) == r.output_text  # a model that does not think: every token
        assert all(lp.top_logprobs == [] for lp in logprobs)


def test_a_model_that_does_not_think_has_no_reasoning_item(tmp_path: Path) -> None:
    for client in serve(tmp_path, FakeEngine(reply="<think>kept</think> as text")):
        r = client.responses.create(model="chat", input="hi")
        assert [o.type for o in r.output] == ["message"] and r.output_text == "<think>kept</think> as text"
        assert r.usage and r.usage.output_tokens_details.reasoning_tokens == 0


def test_reasoning_format_none_leaves_the_block_in_the_text(tmp_path: Path) -> None:
    for client in serve(tmp_path, FakeEngine(template=THINKS, reply=REPLY), reasoning_format="none"):
        r = client.responses.create(model="chat", input="hi")
        assert [o.type for o in r.output] == ["message"] and r.output_text == REPLY


def test_reasoning_items_sent_back_are_skipped(thinking: openai.OpenAI) -> None:
    first = thinking.responses.create(
        model="chat", input="What is the capital of France?", include=["reasoning.encrypted_content"]
    )
    conversation: list[Any] = [
        {"role": "user", "content": "What is the capital of France?"},
        *(o.model_dump(exclude_none=True) for o in first.output),
        {"role": "user", "content": "And of Italy?"},
    ]
    second = thinking.responses.create(model="chat", input=conversation)
    assert second.output_text == "Paris."


def test_what_an_openai_client_sends_is_taken(thinking: openai.OpenAI) -> None:
    """The openai-agents SDK sends `include` always (often empty), `truncation` and `reasoning` as set."""
    r = thinking.responses.create(
        model="chat",
        input="hi",
        include=[],
        truncation="auto",
        reasoning={"effort": "high", "summary": "auto"},
    )
    assert r.status == "completed" and r.truncation == "auto"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"include": ["file_search_call.results"]}, "include"),
        ({"include": ["reasoning.encrypted_content", "reasoning.everything"]}, "include"),
        ({"extra_body": {"include": "reasoning.encrypted_content"}}, "include"),
        ({"extra_body": {"include": [3]}}, "include[0]"),
        ({"extra_body": {"truncation": "sometimes"}}, "truncation"),
        ({"extra_body": {"truncation": 5}}, "truncation"),
        ({"extra_body": {"reasoning": "high"}}, "reasoning"),
        ({"include": ["message.output_text.logprobs"], "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
    ],
)
def test_bad_values_are_a_400_naming_them(thinking: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        thinking.responses.create(model="chat", input="hi", **kwargs)
    body = err.value.body
    assert err.value.status_code == 400 and err.value.param == param, body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error" and body["message"]


# ---------------------------------------------------------------- truncation
def message(role: str, content: str | None = "x", **fields: Any) -> p.ChatMessage:
    return p.ChatMessage(role=role, content=content, **fields)  # type: ignore[arg-type]


CALL = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


def test_droppable_keeps_the_system_and_the_last_user_turn_and_pairs_calls_with_results() -> None:
    messages = [
        message("system"),  # 0: the instructions
        message("user"),  # 1
        message("assistant", None, tool_calls=CALL),  # 2
        message("tool", tool_call_id="call_1"),  # 3: goes with its call
        message("developer"),  # 4
        message("assistant"),  # 5
        message("tool", tool_call_id="call_0"),  # 6: no call before it
        message("user"),  # 7: the last user turn, and what follows it, stay
        message("assistant", None, tool_calls=CALL),
        message("tool", tool_call_id="call_1"),
    ]
    assert droppable(messages) == [[1], [2, 3], [5], [6]]
    assert droppable([message("system"), message("user")]) == []
    assert droppable([message("user"), message("assistant")]) == []  # what follows the last user turn stays
    assert droppable([message("assistant"), message("assistant")]) == [[0]]  # no user turn: the last item stays


@pytest.fixture
def long_context(tmp_path: Path) -> Iterator[tuple[openai.OpenAI, FakeEngine]]:
    engine = FakeEngine(reply="ok")  # 2048 tokens of context, a token per character
    for client in serve(tmp_path, engine):
        yield client, engine


def conversation(turns: int, size: int = 400) -> list[Any]:
    items: list[Any] = []
    for i in range(turns):
        items += [
            {"role": "user", "content": f"question {i} " + "q" * size},
            {"role": "assistant", "content": f"answer {i} " + "a" * size},
        ]
    return [*items, {"role": "user", "content": "the last question"}]


def test_truncation_auto_drops_the_oldest_items_until_it_fits(long_context) -> None:
    client, engine = long_context
    kwargs: dict[str, Any] = dict(model="chat", instructions="Be brief.", input=conversation(6))
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(**kwargs)
    assert err.value.code == "context_length_exceeded" and err.value.param == "input"
    r = client.responses.create(**kwargs, truncation="auto")
    assert r.status == "completed" and r.truncation == "auto" and r.usage
    assert r.usage.input_tokens < 2048
    prompt = engine.last_prompt
    assert "Be brief." in prompt and "the last question" in prompt and "answer 5 " in prompt
    assert "question 0 " not in prompt
    kept = [i for i in range(6) if f"question {i} " in prompt]
    assert kept and kept == list(range(kept[0], 6))  # the oldest went, the newer ones stay
    assert r.usage.input_tokens + 400 >= 2048  # only as many as needed: the last one dropped would not fit
    # With an answer budget, the prompt is cut until both fit.
    budget = client.responses.create(**kwargs, truncation="auto", max_output_tokens=1000)
    assert budget.usage and budget.usage.input_tokens + 1000 <= 2048 < budget.usage.input_tokens + 1400


def test_truncation_auto_refuses_what_cannot_fit(long_context) -> None:
    client, _ = long_context
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model="chat", input=[*conversation(1), {"role": "user", "content": "q" * 3000}], truncation="auto"
        )
    assert err.value.code == "context_length_exceeded" and err.value.param == "input"
    assert "truncation 'auto'" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:  # the answer's budget alone is over the context
        client.responses.create(model="chat", input=conversation(1), truncation="auto", max_output_tokens=4000)
    assert err.value.param == "max_output_tokens"
