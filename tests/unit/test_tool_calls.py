"""Function calling's pure parts: checking tools and tool_choice, the grammar's assembly, the
history's fallback form, and reading calls back out of the text, whole and streamed."""

from __future__ import annotations

import json

import msgspec
import pytest
from fake_engine import FakeEngine

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.engine.grammars import strict_strings
from appliance.engine.interface import Turn
from appliance.engine.text import TextStream
from appliance.serving import tools
from appliance.serving.tool_formats import HERMES, scan

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def render_call(name: str, arguments: str) -> str:
    return HERMES.render([(name, arguments)])


def request(**fields) -> p.ChatCompletionRequest:
    return msgspec.convert(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}, p.ChatCompletionRequest
    )


def plan(**fields) -> tools.ToolPlan | None:
    return tools.plan(FakeEngine(), request(**fields), native=False)


def test_tool_choice_modes() -> None:
    assert plan() is None
    assert plan(tools=[WEATHER], tool_choice="none") is None
    auto = plan(tools=[WEATHER, ADD])
    assert auto is not None and auto.mode == "auto" and auto.parallel and "root ::= calls | text" in auto.grammar
    required = plan(tools=[WEATHER, ADD], tool_choice="required", parallel_tool_calls=False)
    assert required is not None and required.mode == "required" and not required.parallel
    # A forced call's frame is put in the prompt: the grammar starts at the name.
    assert required.lead == '<tool_call>\n{"name": "' and required.grammar.startswith('root ::= ("get_weather')
    named = plan(tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "add"}})
    assert named is not None and [f.name for f in named.callable] == ["add"] and "get_weather" not in named.grammar
    assert "You must call the function add." in named.system_text() and "get_weather" in named.system_text()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": []}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_tools_name_their_param(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        plan(**fields)
    assert err.value.param == param


def test_namespace_prefixes_rule_names_only() -> None:
    grammar = 'root ::= "{" space x{0,3} [a-z"\\]] # note\nspace ::= " "?\nx ::= "root"'
    assert tools.namespace(grammar, "f0-") == (
        'f0-root ::= "{" f0-space f0-x{0,3} [a-z"\\]] \nf0-space ::= " "?\nf0-x ::= "root"'
    )


def test_scan_never_takes_back_what_it_gave() -> None:
    text = render_call("get_weather", '{"city": "Paris"} ') + HERMES.sep + render_call("add", '{"a": {"b": 1}}')
    seen: list[list[tools.ToolCall]] = []
    for end in range(len(text) + 1):
        calls = scan(HERMES, text[:end])
        if seen:
            before = seen[-1]
            assert len(calls) >= len(before)
            for old, new in zip(before, calls, strict=False):
                assert new.name == old.name and new.arguments.startswith(old.arguments)
        seen.append(calls)
    final = seen[-1]
    assert [(c.name, c.arguments, c.done) for c in final] == [
        ("get_weather", '{"city": "Paris"}', True),
        ("add", '{"a": {"b": 1}}', True),
    ]


def stream_deltas(text: str, step: int = 1, mode: str = "auto") -> tuple[tools.CallStream, list[list[p.ToolCallDelta]]]:
    """Feed `text` in pieces of `step` characters; the deltas of each chunk, checked as OpenAI sends them."""
    stream = tools.CallStream(mode)
    chunks: list[list[p.ToolCallDelta]] = []
    for at in range(0, len(text), step):
        content, deltas = stream.feed(text[at : at + step])
        assert content is None
        indexes = [d.index for d in deltas]
        assert len(indexes) == len(set(indexes)), deltas  # one delta per index in a chunk
        chunks.append(deltas)
    return stream, chunks


def test_stream_sends_name_with_the_first_arguments_then_fragments() -> None:
    text = render_call("add", '{"a": 1, "b": 2}') + HERMES.sep + render_call("add", "{}")
    for step in (1, 7, len(text)):
        stream, chunks = stream_deltas(text, step)
        deltas = [d for chunk in chunks for d in chunk]
        heads = [d for d in deltas if d.id is not None]
        assert [(d.index, d.type, d.function.name) for d in heads] == [(0, "function", "add"), (1, "function", "add")]
        for head in heads:  # the first delta of a call already carries arguments
            assert head.function.arguments and head.id.startswith("call_")
        for i in (0, 1):
            args = "".join(d.function.arguments or "" for d in deltas if d.index == i)
            json.loads(args)
        assert stream.finish_reason("stop") == "tool_calls" and stream.finish_reason("length") == "tool_calls"


def test_a_repeated_call_ends_the_answer_whole_and_streamed() -> None:
    once = render_call("get_weather", '{"city": "Paris"}')
    again = render_call("get_weather", '{ "city":  "Paris" }')
    other = render_call("get_weather", '{"city": "Rome"}')
    text = HERMES.sep.join([once, other, again, other])
    required = plan(tools=[WEATHER], tool_choice="required")
    assert required is not None
    lead = len(required.lead)  # what the prompt ends with: the model writes the rest
    message, reason = tools.answer(required, text[lead:], "stop")
    assert reason == "tool_calls" and message.tool_calls is not None
    assert [json.loads(c.function.arguments)["city"] for c in message.tool_calls] == ["Paris", "Rome"]
    # max_tokens cutting a call that so far repeats an earlier one loses no call: "tool_calls"
    message, reason = tools.answer(required, HERMES.sep.join([once, again[:-12]])[lead:], "length")
    assert reason == "tool_calls" and message.tool_calls is not None and len(message.tool_calls) == 1
    # ... and cutting a new call is a real cut
    message, reason = tools.answer(required, HERMES.sep.join([once, other[:-12]])[lead:], "length")
    assert reason == "length" and message.tool_calls is not None and len(message.tool_calls) == 1
    for step in (1, 5):
        stream, chunks = stream_deltas(text, step, "required")
        deltas = [d for chunk in chunks for d in chunk]
        assert sorted({d.index for d in deltas}) == [0, 1]  # the repeat never went out, not even its name
        assert stream.repeated and stream.finish_reason("stop") == "tool_calls"
        rome = "".join(d.function.arguments or "" for d in deltas if d.index == 1)
        assert json.loads(rome) == {"city": "Rome"}
    stream, _ = stream_deltas(HERMES.sep.join([once, again[:-12]]), 3, "required")
    assert stream.finish_reason("length") == "tool_calls"


def test_the_engine_stops_at_a_repeat() -> None:
    once = render_call("add", '{"a": 1}')
    rule = tools.RepeatStop()
    assert not rule.stop(once) and not rule.stop(once + HERMES.sep + render_call("add", '{"a": 2}'))
    assert rule.stop(once + HERMES.sep + render_call("add", '{"a":1}'))
    assert not rule.stop(once + HERMES.sep + render_call("add", '{"a": 1}')[:-3])
    stream = TextStream([], rule)
    pieces = [stream.feed(ch.encode()) for ch in once + HERMES.sep + once + "tail"]
    assert stream.stopped and "".join(pieces) == once + HERMES.sep + once


def test_named_function_is_one_call_even_with_parallel_calls() -> None:
    named = plan(tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "add"}})
    assert named is not None and not named.parallel and named.lead.endswith('"add", "arguments":')
    assert named.grammar.split("\n")[0] == 'root ::= " " f1-root "}\\n</tool_call>"'  # one call, its arguments
    assert plan(tools=[WEATHER, ADD], tool_choice="required").parallel


def test_auto_text_passes_through_and_answers_are_shaped() -> None:
    stream = tools.CallStream("auto")
    assert stream.feed("") == (None, [])
    assert stream.feed("Hel") == ("Hel", [])
    assert stream.feed("lo") == ("lo", []) and stream.finish_reason("stop") == "stop"
    auto = plan(tools=[WEATHER])
    assert auto is not None
    message, reason = tools.answer(auto, "Hello", "stop")
    assert message.content == "Hello" and message.tool_calls is None and reason == "stop"
    cut = (
        render_call("get_weather", '{"city": "Rome"}')
        + HERMES.sep
        + '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Mi'
    )
    message, reason = tools.answer(auto, cut, "length")
    assert reason == "length" and message.content is None and message.tool_calls is not None
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [{"city": "Rome"}]


def test_history_goes_to_the_template_natively_or_in_the_fallback_form() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    assistant = p.ChatMessage(role="assistant", content=None, tool_calls=[call])
    result = p.ChatMessage(role="tool", content="3", tool_call_id="call_1")
    native = tools.history_turn(assistant, "", 1, native=True)
    assert isinstance(native, Turn) and native.tool_calls and native.tool_calls[0]["function"]["arguments"] == {"a": 1}
    assert tools.history_turn(result, "3", 2, native=True) == Turn(role="tool", content="3", tool_call_id="call_1")
    assert tools.history_turn(assistant, "", 1, native=False) == ("assistant", render_call("add", '{"a": 1}'))
    assert tools.history_turn(result, "3", 2, native=False) == ("user", "<tool_response>\n3\n</tool_response>")
    bad = p.ChatMessage(role="assistant", tool_calls=[{"id": "x", "function": {"arguments": "{}"}}])
    with pytest.raises(InvalidRequest) as err:
        tools.history_turn(bad, "", 3, native=False)
    assert err.value.param == "messages[3].tool_calls[0].function"


def test_a_shape_becomes_the_text_branch_of_auto() -> None:
    engine = FakeEngine()
    auto = tools.plan(engine, request(tools=[WEATHER]), native=False, text_grammar='root ::= "{}"')
    assert auto is not None and "text ::= t-root" in auto.grammar and 't-root ::= "{}"' in auto.grammar
    forced = tools.plan(engine, request(tools=[WEATHER], tool_choice="required"), native=False, text_grammar="x")
    assert forced is not None and "text" not in forced.grammar


def test_argument_strings_keep_control_characters_escaped() -> None:
    converted = 'char ::= [^"\\\\] | "\\\\" (["\\\\/bfnrt])\nstring ::= "\\"" char* "\\""'
    assert strict_strings(converted).startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F] | ')
