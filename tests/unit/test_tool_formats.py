"""Each family's tool-call format: found from its template, written and read back whole, streamed
without taking back what was sent, and the grammar that makes the model write it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from fake_engine import FakeEngine

from appliance.core import protocol as p
from appliance.serving import tools
from appliance.serving.tool_formats import FORMATS, HERMES, detect, json_end, scan

TEMPLATES = Path(__file__).parent.parent / "templates"
CALLS = [("get_weather", '{"city": "Paris", "when": {"day": "today"}}'), ("add", '{"a": 1, "b": [2, "}"]}')]


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("llama3.1.jinja", "llama3-json"),
        ("mistral-v0.3.jinja", "mistral"),
        ("qwen2.5.jinja", "hermes"),
        ("deepseek-r1-distill.jinja", "deepseek-r1"),
        ("gemma3.jinja", None),
        ("phi3.jinja", None),
    ],
)
def test_the_format_is_read_from_the_template(template: str, name: str | None) -> None:
    found = detect((TEMPLATES / template).read_text())
    assert (found.name if found else None) == name


@pytest.mark.parametrize("name", list(FORMATS))
def test_calls_round_trip_and_stream_without_taking_back(name: str) -> None:
    fmt = FORMATS[name]
    calls = CALLS if fmt.parallel else CALLS[:1]
    text = fmt.render(calls)
    seen: list = []
    for end in range(len(text) + 1):
        found = scan(fmt, text[:end])
        if seen:
            assert len(found) >= len(seen)
            for old, new in zip(seen, found, strict=False):
                assert new.name == old.name and new.arguments.startswith(old.arguments)
        seen = found
    assert [(c.name, c.arguments, c.done) for c in seen] == [(n, a, True) for n, a in calls]


def test_blank_space_after_the_arguments_is_not_part_of_them() -> None:
    for fmt in FORMATS.values():
        text = fmt.prefix + fmt.open + "f" + fmt.mid + '{"a": 1} \n' + fmt.close + fmt.suffix
        [call] = scan(fmt, text)
        assert call.done and call.arguments == '{"a": 1}', fmt.name


def test_json_end_counts_brackets_outside_strings() -> None:
    assert json_end('{"a": "}{", "b": [1, {"c": 2}]} tail', 0) == len('{"a": "}{", "b": [1, {"c": 2}]}')
    assert json_end('  {"a": "\\"}"', 0) is None
    assert json_end('{"a": [1, 2', 0) is None


def request(**fields) -> p.ChatCompletionRequest:
    return msgspec.convert(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}, p.ChatCompletionRequest
    )


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_grammar_writes_the_frame_and_answers_parse(name: str) -> None:
    fmt = FORMATS[name]
    plan = tools.plan(FakeEngine(), request(tools=[WEATHER], tool_choice="required"), native=True, fmt=fmt)
    assert plan is not None and plan.format is fmt and plan.parallel == fmt.parallel
    # The forced call's start is in the prompt; the grammar writes the rest of the frame.
    assert plan.lead == (fmt.prefix + fmt.open + "get_weather" + fmt.mid).rstrip()  # the grammar writes the space
    for piece in (fmt.open, fmt.mid, fmt.close, fmt.suffix):
        if piece:
            assert json.dumps(piece)[1:-1] in plan.grammar  # a GBNF literal (the mid one joined to the name)
    unled = tools.plan(FakeEngine(), request(tools=[WEATHER], tool_choice="required"), native=True, fmt=fmt, lead=False)
    assert unled is not None and unled.lead == "" and (not fmt.prefix or json.dumps(fmt.prefix)[1:-1] in unled.grammar)
    auto = tools.plan(FakeEngine(), request(tools=[WEATHER]), native=True, fmt=fmt)
    assert auto is not None and "root ::= calls | text" in auto.grammar and tools.text_rule(fmt) in auto.grammar
    written = fmt.render([("get_weather", '{"city": "Rome"}')])
    whole = tools.answer(unled, written, "stop")[0].tool_calls  # the model wrote the whole frame
    assert whole is not None and [(c.function.name, c.function.arguments) for c in whole] == [
        ("get_weather", '{"city": "Rome"}')
    ]
    message, reason = tools.answer(plan, written[len(plan.lead) :], "stop")  # the prompt held the lead
    assert reason == "tool_calls" and message.tool_calls is not None
    [call] = message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Rome"}
    if name == "mistral":  # Mistral's templates refuse other ids when the call comes back
        assert len(call.id) == 9 and call.id.isalnum()
    else:
        assert call.id.startswith("call_")
    text_answer, _ = tools.answer(auto, "Hello there.", "stop")
    assert text_answer.content == "Hello there." and text_answer.tool_calls is None


def test_the_fallback_describes_its_own_format() -> None:
    plan = tools.plan(FakeEngine(), request(tools=[WEATHER], tool_choice="required"), native=False)
    assert plan is not None and plan.format is HERMES
    assert '<tool_call>\n{"name": "<function name>", "arguments": <the arguments as a JSON object>}\n</tool_call>' in (
        plan.system_text()
    )
