"""Function calling through the official openai SDK on the real embedded model (SmolLM2, whose
template has no tool format: the documented fallback). A tiny model's calls may be silly, but
their shape never is: names from the set, arguments that parse and validate."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 24}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD_PARAMS = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_PARAMS,
        },
    },
    {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": ADD_PARAMS}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def valid(value: Any, schema: dict) -> bool:
    """Just enough JSON Schema for the schemas above."""
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return (
            isinstance(value, dict)
            and all(k in value for k in schema.get("required", []))
            and (schema.get("additionalProperties", True) is not False or set(value) <= set(props))
            and all(valid(v, props[k]) for k, v in value.items() if k in props)
        )
    if kind == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", len(value))
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return True


def check_call(name: str, arguments: str, allowed: set[str]) -> None:
    assert name in allowed, name
    parsed = json.loads(arguments)
    assert valid(parsed, SCHEMAS[name]), arguments


def stream_calls(client: openai.OpenAI, **kwargs: Any) -> tuple[str | None, list[tuple[str, str, str]], str | None]:
    """(content, [(id, name, arguments)], finish_reason) from a stream, checking the deltas are as
    OpenAI sends them (one per call index in a chunk; the first with id, type, name and the first
    part of the arguments; then only arguments) and that the SDK's own accumulator agrees."""
    state = ChatCompletionStreamState()
    calls: dict[int, dict[str, str]] = {}
    content: str | None = None
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        state.handle_chunk(chunk)
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            if choice.delta.content:
                content = (content or "") + choice.delta.content
            indexes = [d.index for d in choice.delta.tool_calls or []]
            assert len(indexes) == len(set(indexes)), chunk
            for d in choice.delta.tool_calls or []:
                if d.index not in calls:
                    assert d.id and d.id.startswith("call_") and d.type == "function", d
                    assert d.function and d.function.name and d.function.arguments, d
                    calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": d.function.arguments or ""}
                else:
                    assert d.id is None and d.type is None and (d.function is None or d.function.name is None), d
                    calls[d.index]["arguments"] += (d.function.arguments if d.function else None) or ""
    found = [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    final = state.current_completion_snapshot.choices[0]
    sdk_calls = [(c.id, c.function.name, c.function.arguments) for c in final.message.tool_calls or []]
    assert sdk_calls == found and final.finish_reason == finish
    return content, found, finish


def test_required_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="chat", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, max_tokens=80
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    check_call(call.function.name, call.function.arguments, set(SCHEMAS))


@pytest.mark.parametrize("stream", [False, True])
def test_forced_calls_end_with_tool_calls_not_length(client: openai.OpenAI, stream: bool) -> None:
    """A small model repeats a forced call: the answer ends at the first repeat, never at max_tokens
    with the same call twice. A named function is one call, whatever parallel_tool_calls says."""
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        kwargs: dict[str, Any] = dict(
            model="chat", messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=200, temperature=0
        )
        if stream:
            _, found, finish = stream_calls(client, **kwargs)
            calls = [(name, args) for _, name, args in found]
        else:
            r = client.chat.completions.create(**kwargs)
            finish = r.choices[0].finish_reason
            calls = [(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls or []]
        assert finish == "tool_calls", (choice, calls)
        keys = [(name, json.dumps(json.loads(args), sort_keys=True)) for name, args in calls]
        assert calls and len(set(keys)) == len(keys), calls
        if isinstance(choice, dict):
            assert len(calls) == 1 and calls[0][0] == "get_weather"
        for name, args in calls:
            check_call(name, args, set(SCHEMAS))


def test_the_sdk_stream_helper_parses_the_arguments(client: openai.OpenAI) -> None:
    """openai-python's chat.completions.stream() with pydantic_function_tool: it accumulates the
    deltas itself and parses the arguments into the model (a lost "{" once broke it)."""
    from pydantic import BaseModel

    class GetWeather(BaseModel):
        city: str
        unit: str

    tool = openai.pydantic_function_tool(GetWeather, name="get_weather", description="The weather in a city.")
    with client.chat.completions.stream(
        model="chat", messages=ASK, tools=[tool], tool_choice="required", max_tokens=120, temperature=0
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert isinstance(call.function.parsed_arguments, GetWeather), call
        assert call.function.parsed_arguments == GetWeather.model_validate_json(call.function.arguments)


def test_named_function_streamed(client: openai.OpenAI) -> None:
    content, calls, finish = stream_calls(
        client,
        model="chat",
        messages=[{"role": "user", "content": "What is 2 plus 3?"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False,
        max_tokens=80,
    )
    assert finish == "tool_calls" and content is None and len(calls) == 1
    check_call(calls[0][1], calls[0][2], {"add"})


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_are_whole(client: openai.OpenAI, stream: bool) -> None:
    kwargs: dict[str, Any] = dict(
        model="chat",
        messages=[{"role": "user", "content": "Weather in Paris and in Rome?"}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=90,
        temperature=0,
    )
    if stream:
        _, calls, finish = stream_calls(client, **kwargs)
        names = [(name, args) for _, name, args in calls]
        if finish == "length":  # cut off by max_tokens: the last call may be partial, as documented
            names = names[:-1]
    else:
        r = client.chat.completions.create(**kwargs)
        finish = r.choices[0].finish_reason
        names = [(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls or []]
    assert finish in ("tool_calls", "length") and names
    for name, args in names:
        check_call(name, args, set(SCHEMAS))


@pytest.mark.parametrize("stream", [False, True])
def test_auto_answers_in_text_or_calls_and_both_parse(client: openai.OpenAI, stream: bool) -> None:
    kwargs: dict[str, Any] = dict(
        model="chat", messages=ASK, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False, max_tokens=40, seed=7
    )
    if stream:
        content, calls, finish = stream_calls(client, **kwargs)
        found = [(name, args) for _, name, args in calls]
    else:
        r = client.chat.completions.create(**kwargs)
        content, finish = r.choices[0].message.content, r.choices[0].finish_reason
        found = [(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls or []]
    if found:
        assert content is None and finish in ("tool_calls", "length")
        for name, args in found:
            check_call(name, args, set(SCHEMAS))
    else:
        assert content and not content.startswith("<") and finish in ("stop", "length")


def test_tool_choice_none_is_plain_text(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="chat", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=12)
    choice = r.choices[0]
    assert choice.message.tool_calls is None and choice.message.content and choice.finish_reason in ("stop", "length")


def test_history_with_calls_and_results_reaches_the_model(client: openai.OpenAI) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    history: list[Any] = [
        {"role": "user", "content": "What is 2 plus 3?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]
    bare = client.chat.completions.create(
        model="chat", messages=history[:1], tools=TOOLS, tool_choice="none", max_tokens=1
    )
    r = client.chat.completions.create(
        model="chat", messages=history, tools=TOOLS, tool_choice="none", max_tokens=16, temperature=0
    )
    assert r.choices[0].message.content and r.usage and bare.usage
    # The call and its result are part of the prompt.
    assert r.usage.prompt_tokens > bare.usage.prompt_tokens + 10


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"not": {}}}}},
                    }
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_tools_are_400s_naming_the_param(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="chat", messages=ASK, max_tokens=4, **kwargs)
    assert err.value.status_code == 400 and err.value.param == param, err.value.body


def test_auto_with_response_format_gives_json_or_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="chat",
        messages=ASK,
        tools=TOOLS,
        parallel_tool_calls=False,
        response_format={"type": "json_object"},
        max_tokens=60,
        seed=3,
    )
    choice = r.choices[0]
    if choice.message.tool_calls:
        for c in choice.message.tool_calls:
            check_call(c.function.name, c.function.arguments, set(SCHEMAS))
    else:
        assert choice.message.content and choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_come_with_calls_and_describe_the_constrained_distribution(
    client: openai.OpenAI, stream: bool
) -> None:
    """logprobs with tools: every generated token's, the call's included, from the distribution the
    grammar left (a forbidden token is never among the alternatives, and greedy picks the top one)."""
    kwargs: dict[str, Any] = dict(
        model="chat",
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=80,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    if stream:
        content: list[Any] = []
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                content += chunk.choices[0].logprobs.content
    else:
        r = client.chat.completions.create(**kwargs)
        assert r.choices[0].message.tool_calls and r.choices[0].logprobs is not None
        content = r.choices[0].logprobs.content or []
    assert content
    # The call's frame up to the name is in the prompt (a forced call's lead): the first generated token
    # starts a function's name, and its alternatives can only be beginnings of the names offered.
    names = ['get_weather", "arguments": ', 'add", "arguments": ']
    first = content[0]
    assert first.top_logprobs and all(any(n.startswith(t.token) for n in names) for t in first.top_logprobs), first
    for item in content:
        assert item.logprob <= 0 and item.top_logprobs[0].token == item.token
        assert sum(2.718281828**t.logprob for t in item.top_logprobs) <= 1.0001
