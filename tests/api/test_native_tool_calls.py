"""Tool calls in each family's own format on the real embedded model: copies of its GGUF carry the
Llama 3.1, Mistral v0.3, Qwen 2.5 and DeepSeek R1 chat templates (tests/templates/), the server
finds the format in the template, makes the model write its calls that way (a grammar), reads them
back for the openai SDK, and sends them back to the template natively in the next turn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gguf_copy import copy_gguf
from live import start_server

from appliance.engine.engine import embedded_model_path

pytestmark = pytest.mark.slow

TEMPLATES = Path(__file__).parent.parent / "templates"
FAMILIES = {
    "llama3.1": "llama3.1.jinja",
    "mistral-v0.3": "mistral-v0.3.jinja",
    "qwen2.5": "qwen2.5.jinja",
    "deepseek-r1": "deepseek-r1-distill.jinja",
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK: list[Any] = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, openai.OpenAI]]:
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    model = copy_gguf(embedded_model_path(), folder / f"{name}.gguf", template=(TEMPLATES / FAMILIES[name]).read_text())
    # DeepSeek's generation prompt opens a thinking block, which a call must follow (tests/api/
    # test_reasoning_content.py); SmolLM2 never closes one, so the format is tested with the block as text.
    thinking = ["--reasoning-format", "none"] if name == "deepseek-r1" else []
    live = start_server(folder / "data", "--model", str(model), "--slots", "2", "--ctx", "4096", *thinking)
    try:
        key = live.new_key("formats", plan="scale")
        yield name, openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    finally:
        live.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_call_in_the_familys_format(family: tuple[str, openai.OpenAI], stream: bool) -> None:
    name, client = family
    kwargs: dict[str, Any] = dict(
        model="chat", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=120, temperature=0
    )
    if stream:
        with client.chat.completions.stream(**kwargs) as s:
            for _ in s:
                pass
            completion = s.get_final_completion()
    else:
        completion = client.chat.completions.create(**kwargs)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, (name, choice)
    for call in choice.message.tool_calls:
        assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
        # Mistral's templates refuse other ids when the call comes back in the history.
        assert (len(call.id) == 9 and call.id.isalnum()) if name == "mistral-v0.3" else call.id.startswith("call_")


def test_the_call_and_its_result_go_back_natively(family: tuple[str, openai.OpenAI]) -> None:
    _, client = family
    first = client.chat.completions.create(
        model="chat", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=120, temperature=0
    )
    calls = first.choices[0].message.tool_calls or []
    assert calls
    history: list[Any] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        *({"role": "tool", "tool_call_id": c.id, "content": "18 C, sunny"} for c in calls),
    ]
    answer = client.chat.completions.create(
        model="chat", messages=history, tools=[WEATHER], tool_choice="none", max_tokens=24, temperature=0
    )
    bare = client.chat.completions.create(model="chat", messages=ASK, max_tokens=1)
    assert answer.choices[0].message.content is not None and answer.usage and bare.usage
    # The call and its result are in the prompt (the template rendered them; it raises on what it refuses).
    assert answer.usage.prompt_tokens > bare.usage.prompt_tokens + 10
