"""The openai-agents SDK's default model (the Responses API) against the live server: an agent that
answers, and one that calls a function tool and stops on its result."""

from __future__ import annotations

import pytest
from live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.clients]


@pytest.fixture
def agents(server: LiveServer, api_key: str):
    import agents
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)  # traces would go to OpenAI's servers
    agents.set_default_openai_client(AsyncOpenAI(base_url=server.base_url, api_key=api_key, max_retries=0))
    agents.set_default_openai_api("responses")
    return agents


def test_an_agent_answers(agents) -> None:
    agent = agents.Agent(
        name="capital",
        instructions="Answer in one short sentence.",
        model="chat",
        model_settings=agents.ModelSettings(max_tokens=60, temperature=0),
    )
    result = agents.Runner.run_sync(agent, "What is the capital of France?")
    assert isinstance(result.final_output, str) and result.final_output


def test_an_agent_calls_its_tool(agents) -> None:
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return "18 C, sunny"

    agent = agents.Agent(
        name="weather",
        instructions="Use the tool.",
        model="chat",
        tools=[get_weather],
        tool_use_behavior="stop_on_first_tool",
        model_settings=agents.ModelSettings(tool_choice="required", max_tokens=120, temperature=0),
    )
    result = agents.Runner.run_sync(agent, "What is the weather like in Paris today?")
    assert seen and result.final_output == "18 C, sunny"
