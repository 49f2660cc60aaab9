"""The client matrix, Python side: each library apps use, in its own documented usage, against the live
server on the embedded model (SmolLM2-135M): LangChain (langchain-openai), instructor, pydantic-ai
and litellm. The openai SDK itself is covered by tests/api; the Node libraries by test_node_clients.py.

Where a scenario leaves the answer's content to the model (JSON mode without a schema, a prompted
format, tools on "auto"), a 135M model is often semantically wrong: those assert the wire shape only,
and say so. Everything a grammar enforces (tool calls, json_schema) must pass whole."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from typing import Any, Literal

import httpx
import openai
import pytest
from live import LiveServer
from pydantic import BaseModel

pytestmark = [pytest.mark.slow, pytest.mark.clients]

# litellm fetches a model price list from the internet when first used unless told to keep its own
# copy; these tests reach nothing but the local server.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ASK = "What is the weather like in Paris today?"


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


def weather_tool(city: str) -> str:
    """The current weather in a city."""
    return "18 C, sunny"


class Wire:
    """The chat completions the library received, as sent (status, body), through an httpx hook."""

    def __init__(self) -> None:
        self.bodies: list[tuple[int, dict]] = []

    def hook(self, response: httpx.Response) -> None:
        if response.request.url.path.endswith("/chat/completions"):
            response.read()
            text = response.text
            if response.headers.get("content-type", "").startswith("application/json"):
                self.bodies.append((response.status_code, json.loads(text)))
            else:
                self.bodies.append((response.status_code, {"stream": text}))


@pytest.fixture
def wire_client(server: LiveServer, api_key: str) -> tuple[openai.OpenAI, Wire]:
    wire = Wire()
    http = httpx.Client(event_hooks={"response": [wire.hook]}, timeout=120)
    return openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0, http_client=http), wire


# ---------------------------------------------------------------- instructor
@pytest.mark.parametrize("mode", ["TOOLS", "TOOLS_STRICT", "JSON_SCHEMA"])
def test_instructor_structured_modes(wire_client: tuple[openai.OpenAI, Wire], mode: str) -> None:
    import instructor

    client, _ = wire_client
    ic = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    got = ic.chat.completions.create(
        model="chat", response_model=Weather, messages=[{"role": "user", "content": ASK}], max_tokens=200, max_retries=0
    )
    assert isinstance(got, Weather) and got.city


@pytest.mark.parametrize("mode", ["JSON", "MD_JSON", "PARALLEL_TOOLS"])
def test_instructor_unconstrained_modes_are_well_formed_on_the_wire(
    wire_client: tuple[openai.OpenAI, Wire], mode: str
) -> None:
    """JSON (json_object: any object), MD_JSON (a fenced block in free text) and PARALLEL_TOOLS (tools on
    "auto") leave the content to the model, which at 135M may echo the schema or answer in text: the
    library's validation may then fail, which is the model's answer, not the wire. Assert the wire."""
    import instructor
    from instructor.core.exceptions import InstructorError

    client, wire = wire_client
    ic = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    model: Any = Iterable[Weather] if mode == "PARALLEL_TOOLS" else Weather
    try:
        got = ic.chat.completions.create(
            model="chat",
            response_model=model,
            messages=[{"role": "user", "content": ASK}],
            max_tokens=120,
            max_retries=0,
        )
        if mode == "PARALLEL_TOOLS":
            got = list(got)
    except InstructorError:  # validation failed, or max_tokens cut the text: the model's answer
        got = None
    [(status, body)] = wire.bodies
    assert status == 200 and body["object"] == "chat.completion", body
    choice = body["choices"][0]
    if mode == "JSON" and choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)  # JSON mode's one promise
    if choice["message"].get("tool_calls"):
        for call in choice["message"]["tool_calls"]:
            Weather.model_validate_json(call["function"]["arguments"])  # a call always fits its schema
    if got is not None:
        assert got


def test_instructor_create_partial_streams_whole_objects(wire_client: tuple[openai.OpenAI, Wire]) -> None:
    """create_partial accumulates streamed tool-call deltas itself (a lost "{" once broke it)."""
    import instructor

    client, _ = wire_client
    ic = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    parts = list(
        ic.chat.completions.create_partial(
            model="chat",
            response_model=Weather,
            messages=[{"role": "user", "content": ASK}],
            max_tokens=200,
            max_retries=0,
        )
    )
    assert parts and parts[-1].city and parts[-1].unit in ("celsius", "fahrenheit")


def test_instructor_create_iterable_yields_each_call(wire_client: tuple[openai.OpenAI, Wire]) -> None:
    """create_iterable asks for one call whose arguments hold a list (instructor's IterableModel). How
    many items the 135M model lists (none, or the same city twice) is its answer; the call and every
    item in it fit the schema, and instructor yields exactly those items."""
    import instructor

    client, wire = wire_client
    ic = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    items = list(
        ic.chat.completions.create_iterable(
            model="chat",
            response_model=Weather,
            messages=[{"role": "user", "content": "Weather in Paris and in Rome?"}],
            max_tokens=200,
            temperature=0,
            max_retries=0,
        )
    )
    [(status, body)] = wire.bodies  # streamed: the call's argument deltas, put together
    arguments = ""
    for line in body["stream"].splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                for delta in choice["delta"].get("tool_calls") or []:
                    assert delta["index"] == 0  # one call
                    arguments += delta["function"].get("arguments") or ""
    listed = next(iter(json.loads(arguments).values()))
    assert status == 200 and isinstance(listed, list)
    assert [Weather.model_validate(x) for x in listed] == items


# ---------------------------------------------------------------- LangChain
@pytest.fixture
def llm(server: LiveServer, api_key: str):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=server.base_url, api_key=api_key, model="chat", max_tokens=120, temperature=0, max_retries=0
    )


def test_langchain_invoke_and_stream(llm) -> None:
    whole = llm.invoke("Say hi").content
    streamed = "".join(chunk.content for chunk in llm.stream("Say hi"))
    assert whole and streamed == whole


@pytest.mark.parametrize("choice", ["any", "required", "weather_tool"])
@pytest.mark.parametrize("stream", [False, True])
def test_langchain_forced_tool_calls(llm, choice: str, stream: bool) -> None:
    from langchain_core.tools import tool

    bound = llm.bind_tools([tool(weather_tool)], tool_choice=choice)
    if stream:
        chunks = list(bound.stream(ASK))
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
    else:
        message = bound.invoke(ASK)
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call["name"] == "weather_tool" and isinstance(call["args"].get("city"), str) and call["id"]
    assert message.response_metadata.get("finish_reason") == "tool_calls"


def test_langchain_auto_tools_answer_in_text_or_calls(llm) -> None:
    """tool_choice "auto": the 135M model mostly answers in text; either way the message is whole."""
    from langchain_core.tools import tool

    message = llm.bind_tools([tool(weather_tool)]).invoke(ASK)
    assert bool(message.tool_calls) != bool(message.content)


def test_langchain_tool_round_trip(llm) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    get_weather = tool(weather_tool)
    ai = llm.bind_tools([get_weather], tool_choice="required").invoke([HumanMessage(ASK)])
    results = [ToolMessage(get_weather.invoke(c["args"]), tool_call_id=c["id"]) for c in ai.tool_calls]
    answer = llm.bind_tools([get_weather]).invoke([HumanMessage(ASK), ai, *results])
    assert answer.content or answer.tool_calls


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
@pytest.mark.parametrize("stream", [False, True])
def test_langchain_structured_output(llm, method: str, stream: bool) -> None:
    structured = llm.with_structured_output(Weather, method=method)
    got = list(structured.stream(ASK))[-1] if stream else structured.invoke(ASK)
    assert isinstance(got, Weather) and got.city


def test_langchain_json_mode_is_json(llm) -> None:
    """json_mode constrains to a JSON object, not to the schema: the 135M model's fields may be wrong
    (an enum value it made up), so the raw output is checked, not the parsed model."""
    structured = llm.with_structured_output(Weather, method="json_mode", include_raw=True)
    got = structured.invoke(f"{ASK} Answer in JSON with the keys city and unit.")
    assert isinstance(json.loads(got["raw"].content), dict)


# ---------------------------------------------------------------- pydantic-ai
@pytest.fixture
def pai_model(server: LiveServer, api_key: str):
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel("chat", provider=OpenAIProvider(base_url=server.base_url, api_key=api_key))


def pai_settings():
    from pydantic_ai.settings import ModelSettings

    return ModelSettings(max_tokens=120, temperature=0)


def test_pydantic_ai_text_and_stream(pai_model) -> None:
    from pydantic_ai import Agent

    agent = Agent(pai_model, model_settings=pai_settings())
    whole = agent.run_sync("Say hi").output

    async def streamed() -> tuple[str, str]:
        async with agent.run_stream("Say hi") as run:
            pieces = "".join([piece async for piece in run.stream_text(delta=True)])
            return pieces, await run.get_output()

    # The deltas make up the streamed answer. Not compared with `whole`: the second request reuses the
    # first's cached prompt, and greedy decoding on a 135M model may then break a near-tie the other
    # way (tests/engine's near_tie helpers measure that drift).
    pieces, output = asyncio.run(streamed())
    assert whole and pieces and pieces == output


@pytest.mark.parametrize("kind", ["tool", "native", "tool-streamed"])
def test_pydantic_ai_structured_output(pai_model, kind: str) -> None:
    from pydantic_ai import Agent, NativeOutput

    output: Any = NativeOutput(Weather) if kind == "native" else Weather
    agent = Agent(pai_model, model_settings=pai_settings(), output_type=output)
    if kind == "tool-streamed":

        async def streamed() -> Weather:
            async with agent.run_stream(ASK) as run:
                return await run.get_output()

        got = asyncio.run(streamed())
    else:
        got = agent.run_sync(ASK).output
    assert isinstance(got, Weather) and got.city


def test_pydantic_ai_prompted_output_is_a_text_answer(pai_model) -> None:
    """PromptedOutput asks for JSON in the prompt alone; the 135M model rarely complies, so the request
    and its plain-text answer are checked, not the parse."""
    from pydantic_ai import Agent, PromptedOutput
    from pydantic_ai.exceptions import UnexpectedModelBehavior

    agent = Agent(pai_model, model_settings=pai_settings(), output_type=PromptedOutput(Weather), retries=0)
    try:
        got = agent.run_sync(ASK).output
        assert isinstance(got, Weather)
    except UnexpectedModelBehavior as exc:
        assert "retries" in str(exc)


def test_pydantic_ai_tool_loop(pai_model) -> None:
    """A tool the agent must call (the output is a tool too): the call runs and the loop ends."""
    from pydantic_ai import Agent

    agent = Agent(pai_model, model_settings=pai_settings(), output_type=Weather)
    called: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        called.append(city)
        return "18 C, sunny"

    result = agent.run_sync(ASK)
    assert isinstance(result.output, Weather)
    names = [
        part.tool_name for m in result.all_messages() for part in getattr(m, "parts", []) if hasattr(part, "tool_name")
    ]
    assert names and all(name in ("get_weather", "final_result") for name in names)


# ---------------------------------------------------------------- litellm
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture
def litellm_args(server: LiveServer, api_key: str) -> dict:
    return dict(
        model="openai/chat", api_base=server.base_url, api_key=api_key, max_tokens=80, temperature=0, num_retries=0
    )


def test_litellm_chat_stream_and_async(litellm_args: dict) -> None:
    import litellm

    messages = [{"role": "user", "content": "Say hi"}]
    whole = litellm.completion(messages=messages, **litellm_args).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or "" for c in litellm.completion(messages=messages, stream=True, **litellm_args)
    )
    awaited = asyncio.run(litellm.acompletion(messages=messages, **litellm_args)).choices[0].message.content
    assert whole and streamed == whole == awaited


@pytest.mark.parametrize("stream", [False, True])
def test_litellm_tools(litellm_args: dict, stream: bool) -> None:
    import litellm

    messages = [{"role": "user", "content": ASK}]
    kwargs = dict(messages=messages, tools=TOOLS, tool_choice="required", **litellm_args)
    if stream:
        response = litellm.stream_chunk_builder(list(litellm.completion(stream=True, **kwargs)), messages=messages)
    else:
        response = litellm.completion(**kwargs)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)


def test_litellm_json_schema(litellm_args: dict) -> None:
    import litellm

    response = litellm.completion(messages=[{"role": "user", "content": ASK}], response_format=Weather, **litellm_args)
    assert Weather.model_validate_json(response.choices[0].message.content).city


def test_litellm_named_auto_and_a_round_trip(litellm_args: dict) -> None:
    import litellm

    messages: list[Any] = [{"role": "user", "content": ASK}]
    named = litellm.completion(
        messages=messages,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        **litellm_args,
    )
    calls = named.choices[0].message.tool_calls
    assert named.choices[0].finish_reason == "tool_calls" and calls and len(calls) == 1
    auto = litellm.completion(messages=messages, tools=TOOLS, **litellm_args).choices[0]
    assert bool(auto.message.tool_calls) != bool(auto.message.content)  # the 135M model picks either
    history = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C, sunny"},
    ]
    answer = litellm.completion(messages=history, tools=TOOLS, tool_choice="none", **litellm_args)
    assert answer.choices[0].message.content
