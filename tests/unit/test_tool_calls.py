"""Function calling's pure parts: checking tools and tool_choice, the grammar's assembly, the
history's fallback form, and reading calls back out of the text, whole and streamed."""

from __future__ import annotations

import json

import msgspec
import pytest
from fake_engine import FakeEngine

from appliance import protocol as p
from appliance.errors import InvalidRequest
from appliance.hive.grammars import strict_strings
from appliance.hive.types import Turn
from appliance.serving import tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


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
    assert required.grammar.startswith("root ::= calls\ncalls ::= call\n")
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
    text = (
        tools.render_call("get_weather", '{"city": "Paris"} ') + tools.SEP + tools.render_call("add", '{"a": {"b": 1}}')
    )
    seen: list[list[tools.Call]] = []
    for end in range(len(text) + 1):
        calls = tools.scan(text[:end])
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


def test_stream_sends_name_once_then_fragments() -> None:
    text = tools.render_call("add", '{"a": 1, "b": 2}') + tools.SEP + tools.render_call("add", "{}")
    stream = tools.CallStream("auto")
    deltas: list[p.ToolCallDelta] = []
    for ch in text:
        content, more = stream.feed(ch)
        assert content is None
        deltas += more
    heads = [d for d in deltas if d.id is not None]
    assert [(d.index, d.type, d.function.name) for d in heads] == [(0, "function", "add"), (1, "function", "add")]
    for i in (0, 1):
        args = "".join(d.function.arguments or "" for d in deltas if d.index == i)
        json.loads(args)
    assert stream.finish_reason("stop") == "tool_calls" and stream.finish_reason("length") == "length"


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
        tools.render_call("get_weather", '{"city": "Rome"}')
        + tools.SEP
        + '<tool_call>\n{"name": "get_weather", "arguments": {"ci'
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
    assert tools.history_turn(assistant, "", 1, native=False) == ("assistant", tools.render_call("add", '{"a": 1}'))
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
