"""API error paths that need a fake engine: loading, engine crash, unexpected exceptions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def make_client(tmp_path):
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]
    clients = []

    def make(engine: FakeEngine) -> TestClient:
        app = create_app(Settings(data_dir=str(tmp_path)), engine=engine, store=store, specialists=load_specialists())
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        client.headers["Authorization"] = f"Bearer {key}"
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
    store.close()


def envelope(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return error


def test_model_loading_is_503(make_client) -> None:
    client = make_client(FakeEngine(loaded=False))
    r = client.post("/v1/chat/completions", json=CHAT)
    envelope(r, 503, "model_loading")
    assert r.headers["retry-after"] == "2"
    health = client.get("/health").json()
    assert health["status"] == "loading" and health["model_loaded"] is False


def test_engine_failure_is_500_or_stream_error(make_client, caplog) -> None:
    client = make_client(FakeEngine(outcome="error"))
    envelope(client.post("/v1/chat/completions", json=CHAT), 500, "internal_error")
    r = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"X-Request-Id": "stream-42"})
    assert r.status_code == 200
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "internal_error"
    # the error event carries the request's id, and is logged like any other server error
    assert error["request_id"] == r.headers["x-request-id"] == "stream-42"
    assert any("stream-42" in rec.getMessage() and "500" in rec.getMessage() for rec in caplog.records)


def test_a_model_that_fails_to_load_is_reported(tmp_path) -> None:
    store = Store(tmp_path)
    reasons: list[str] = []
    engine = FakeEngine(loaded=False, load_error="bad magic")
    app = create_app(
        Settings(data_dir=str(tmp_path)),
        engine=engine,
        store=store,
        specialists=load_specialists(),
        on_load_failure=reasons.append,
    )
    with TestClient(app) as client:
        client.get("/health")
    store.close()
    assert reasons == ["bad magic"]


def test_unexpected_exception_is_500_without_trace(make_client) -> None:
    client = make_client(FakeEngine(explode=RuntimeError("secret internals")))
    error = envelope(client.post("/v1/chat/completions", json=CHAT), 500, "internal_error")
    assert "secret internals" not in error["message"]


def test_fake_round_trip(make_client) -> None:
    client = make_client(FakeEngine(reply="hello there"))
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.json()["choices"][0]["message"]["content"] == "hello there"
    r = client.post("/v1/infer", json={"specialist": "qa", "prompt": "x"})
    assert r.json()["result"] == "hello there"


def test_tool_calls_reach_the_wire(make_client) -> None:
    """The fake model writes one call in the fallback form (after its start, '<tool_call>\n{"name": "f",
    "arguments":', which a forced call's prompt ends with); the API answers with it (the real model's
    calls are tested in tests/api/test_tools.py)."""
    client = make_client(FakeEngine(reply=' {"x": 1}}\n</tool_call>'))
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    body = {**CHAT, "tools": [tool], "tool_choice": "required"}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert client.post("/v1/chat/completions", json={**CHAT, "tools": []}).json()["error"]["param"] == "tools"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"99999": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"labels": []}, "labels"),
        ({"labels": ["a", "a"]}, "labels"),
    ],
)
def test_bad_shapes_and_sampling_options_are_400s_before_metering(make_client, extra: dict, param: str) -> None:
    client = make_client(FakeEngine())
    r = client.post("/v1/chat/completions", json={**CHAT, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"echo": True, "logprobs": 1}, "logprobs"),
        ({"logprobs": 6}, "logprobs"),
        ({"prompt": ["ok", ""]}, "prompt[1]"),
    ],
)
def test_bad_legacy_completion_options_are_400s(make_client, extra: dict, param: str) -> None:
    client = make_client(FakeEngine())
    r = client.post("/v1/completions", json={"model": "chat", "prompt": "hi", **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_caller_system_message_follows_a_task_specialist_but_replaces_the_chat_persona(make_client) -> None:
    """The fake engine counts one token per character of `<role>content` turns, so prompt_tokens shows
    exactly which system turn the request was given."""
    client = make_client(FakeEngine())
    specialists = load_specialists()
    own = "Be brief."

    def prompt_tokens(model: str, system: str | None) -> int:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "hi"}]
        r = client.post("/v1/chat/completions", json={"model": model, "messages": messages})
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens"]

    def rendered(system: str, examples=()) -> int:
        turns = [("system", system)] + [t for ex in examples for t in (("user", ex.user), ("assistant", ex.assistant))]
        return len("".join(f"<{r}>{c}" for r, c in [*turns, ("user", "hi")]) + "<assistant>")

    chat = specialists.by_name["chat"]
    assert chat.caller_system == "replace"
    assert prompt_tokens("gpt-4o", own) == rendered(own)
    assert prompt_tokens("chat", None) == rendered(chat.system_prompt)
    summarise = specialists.by_name["summarise"]
    assert summarise.caller_system == "append"
    assert prompt_tokens("summarise", own) == rendered(summarise.system_prompt + "\n\n" + own, summarise.examples)
