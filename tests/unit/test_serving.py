"""The serving package without HTTP (fake engine): each endpoint's stream renderer, driven by the
shared flow, sends its flavour's events in OpenAI's order, and every request is metered."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec
import pytest

from appliance.core import protocol as p
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.serving import MeteredCall, Serving
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

USER = [p.ChatMessage(role="user", content="hi")]


@pytest.fixture
def serving(tmp_path):
    store = Store(tmp_path)
    principal = store.authenticate(store.ensure_admin().key)  # type: ignore[union-attr]
    yield (
        Serving(Settings(data_dir=str(tmp_path)), FakeEngine(reply="hello there"), load_specialists(), store),
        principal,
    )
    store.close()


def events(chunks: list[bytes]) -> list[dict | str]:
    out: list[dict | str] = []
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        body = chunk[6:-2].decode()
        out.append(body if body == "[DONE]" else json.loads(body))
    return out


def test_chat_stream_role_content_finish_usage_done(serving) -> None:
    s, principal = serving

    async def run() -> list[bytes]:
        req = p.ChatCompletionRequest(
            model="chat", messages=USER, stream=True, n=2, stream_options=p.StreamOptions(include_usage=True)
        )
        return [chunk async for chunk in s.chat.stream(MeteredCall(principal, "chat.completions"), req)]

    out = events(asyncio.run(run()))
    assert out[-1] == "[DONE]"
    *chunks, usage = out[:-1]
    assert {c["id"] for c in out[:-1]} == {chunks[0]["id"]} and chunks[0]["object"] == "chat.completion.chunk"
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks[2:] if c["choices"][0]["index"] == i]
        assert "".join(c["delta"].get("content", "") for c in mine) == "hello there"
        assert mine[-1] == {"index": i, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4


def test_completion_stream_echoes_first_and_sends_usage_only_when_asked(serving) -> None:
    s, principal = serving

    async def run() -> list[bytes]:
        req = p.CompletionRequest(model="chat", prompt="Say:", stream=True, echo=True)
        return [chunk async for chunk in s.completions.stream(MeteredCall(principal, "completions"), req)]

    out = events(asyncio.run(run()))
    assert out[-1] == "[DONE]" and all(c["object"] == "text_completion" for c in out[:-1])
    texts = [c["choices"][0]["text"] for c in out[:-1]]
    assert texts == ["Say:", "hello", " there", ""]
    assert out[-2]["choices"][0]["finish_reason"] == "stop" and out[-2]["usage"] is None


def test_every_request_is_metered(serving) -> None:
    s, principal = serving

    async def run() -> None:
        await s.chat.complete(
            MeteredCall(principal, "chat.completions"), p.ChatCompletionRequest(model="chat", messages=USER)
        )
        await s.infer.complete(MeteredCall(principal, "infer"), p.InferRequest(specialist="qa", prompt="x"))
        stream = s.chat.stream(
            MeteredCall(principal, "chat.completions"), p.ChatCompletionRequest(model="chat", messages=USER)
        )
        async for _ in stream:
            pass

    asyncio.run(run())
    assert s.status.traffic.requests_total == 3
    assert s.status.hive_status().history[-1].requests == 3


def test_the_hive_status_is_the_engines_status_as_it_is_plus_the_servers_facts(serving) -> None:
    """One status: the engine reports in the wire's own types, and serving renames and recomputes nothing."""
    s, _ = serving
    engine = s.status.engine.status()
    hive = s.status.hive_status()
    for field in msgspec.structs.fields(p.EngineStatus):
        assert getattr(hive, field.name) == getattr(engine, field.name), field.name
    assert hive.specialists and hive.version
    wire = msgspec.json.decode(p.encode(hive))
    assert set(wire["model"]) == {f.name for f in msgspec.structs.fields(p.ModelStatus)}
    assert msgspec.json.decode(p.encode(hive), type=p.HiveStatus) == hive  # what the SDK decodes
