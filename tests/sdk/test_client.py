"""alveare.Client against a live server on the real model: every method, typed results and errors, config."""

from __future__ import annotations

import httpx
import pytest
from live import LiveServer

import alveare
from alveare.types import ChatCompletion, Health, HiveStatus, InferResponse, ModelList, SpecialistList, UsageReport

pytestmark = pytest.mark.slow


def test_the_spec_example_runs_as_written(server: LiveServer, api_key: str) -> None:
    # From the help centre's Python SDK article; only the base URL is added.
    client = alveare.Client(api_key=api_key, base_url=server.base_url)
    response = client.infer(specialist="summarise", prompt="Summarise this quarterly report...", max_tokens=256)
    assert isinstance(response, InferResponse)
    assert response.result
    assert response.tokens_used == response.prompt_tokens + response.completion_tokens > 0
    assert response.latency_ms >= 0
    assert response.specialist == "summarise" and response.id.startswith("inf-")
    client.close()


def test_infer_parameters(sdk: alveare.Client) -> None:
    response = sdk.infer("classify", "I love this product! Best purchase ever.", max_tokens=3, temperature=0)
    assert response.completion_tokens <= 3
    assert response.finish_reason in ("stop", "length")


def test_chat_and_its_stream(sdk: alveare.Client) -> None:
    completion = sdk.chat(
        "alveare-summarise",
        [{"role": "user", "content": "Summarise: revenue grew 23% to $4.2B."}],
        max_tokens=12,
        temperature=0,
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens <= 12
    # A plain string is one user message; an OpenAI model name maps to a specialist.
    assert sdk.chat("gpt-4o-mini", "Say hi.", max_tokens=4).choices[0].message.content is not None

    pieces = list(sdk.chat_stream("chat", "Count to five.", max_tokens=10, temperature=0))
    assert len(pieces) >= 2 and all(isinstance(p, str) and p for p in pieces)
    # Text as it arrives: about one piece per token, never more pieces than tokens asked for.
    assert len(pieces) <= 10


def test_models_usage_health(sdk: alveare.Client) -> None:
    models = sdk.models()
    assert isinstance(models, ModelList)
    assert {"alveare-summarise", "alveare-classify"} <= {m.id for m in models.data}
    sdk.infer("qa", "What is 2+2?", max_tokens=2)
    usage = sdk.usage()
    assert isinstance(usage, UsageReport)
    assert usage.requests_used >= 1 and usage.by_specialist.get("qa", 0) >= 1
    health = sdk.health()
    assert isinstance(health, Health) and health.status == "ok" and health.model_loaded


def test_health_needs_no_key(server: LiveServer) -> None:
    with alveare.Client(base_url=server.url) as client:
        assert client.health().status == "ok"
        with pytest.raises(alveare.AuthenticationError, match="No API key"):
            client.models()


def test_hive_status_with_an_admin_key(server: LiveServer, sdk: alveare.Client) -> None:
    with alveare.Client(api_key=server.admin_key, base_url=server.url) as admin:
        status = admin.hive_status()
    assert isinstance(status, HiveStatus) and status.loaded and status.slots_total >= 1
    with pytest.raises(alveare.PermissionDeniedError) as info:
        sdk.hive_status()
    assert info.value.status == 403


def test_specialists_list_update_reset(sdk: alveare.Client) -> None:
    listed = sdk.specialists.list()
    assert isinstance(listed, SpecialistList) and listed.custom_prompts_allowed
    default = next(s for s in listed.data if s.name == "extract")
    updated = sdk.specialists.update("extract", system_prompt="Return only the dates you find.")
    assert updated.custom and updated.system_prompt == "Return only the dates you find."
    assert next(s for s in sdk.specialists.list().data if s.name == "extract").custom
    reset = sdk.specialists.reset("extract")
    assert not reset.custom and reset.system_prompt == default.system_prompt


def test_errors_are_typed_and_carry_the_envelope(server: LiveServer, sdk: alveare.Client) -> None:
    with pytest.raises(alveare.NotFoundError) as info:
        sdk.infer("astrology", "Will it rain?")
    e = info.value
    assert (e.status, e.code, e.type) == (404, "model_not_found", "invalid_request_error")
    assert e.request_id and e.request_id.startswith("req_") and e.request_id in str(e)

    with pytest.raises(alveare.BadRequestError) as info:
        sdk.infer("qa", "x", max_tokens=0)
    assert info.value.status == 400 and info.value.param == "max_tokens"

    with pytest.raises(alveare.BadRequestError) as info:
        sdk.specialists.update("qa", system_prompt="")
    assert info.value.status == 400

    bad = alveare.Client(api_key="alv_live_" + "x" * 39, base_url=server.url)
    with bad, pytest.raises(alveare.AuthenticationError) as info:
        bad.models()
    assert (info.value.status, info.value.code) == (401, "invalid_api_key")

    solo = server.new_key("sdk-errors", plan="solo")
    with (
        alveare.Client(api_key=solo, base_url=server.url) as client,
        pytest.raises(alveare.PermissionDeniedError) as info,
    ):
        enabled = next(s.name for s in client.specialists.list().data if s.enabled)
        client.specialists.update(enabled, system_prompt="Be brief.")
    assert info.value.code == "custom_prompts_not_in_plan"


def test_connection_failure_and_timeout(server: LiveServer, api_key: str) -> None:
    from live import free_port

    client = alveare.Client(api_key=api_key, base_url=f"http://127.0.0.1:{free_port()}", max_retries=1)
    with client, pytest.raises(alveare.APIConnectionError) as info:
        client.models()
    assert info.value.status is None and "Could not reach" in str(info.value)
    # A timeout waiting for an answer is not retried (the server may still be generating).
    quick = httpx.Timeout(0.05, connect=10)
    client = alveare.Client(api_key=api_key, base_url=server.url, timeout=quick)
    with client, pytest.raises(alveare.APITimeoutError):
        client.infer("chat", "Write a long story about bees.", max_tokens=200)


def test_configuration_environment_then_config_file(
    server: LiveServer, api_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    config = tmp_path / "alveare" / "config.toml"
    config.parent.mkdir()
    config.write_text(f'api_key = "{api_key}"\nbase_url = "{server.base_url}"\n', encoding="utf-8")
    monkeypatch.delenv("ALVEARE_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with alveare.Client() as client:  # everything from $XDG_CONFIG_HOME/alveare/config.toml
        assert (client.api_key, client.base_url) == (api_key, server.url)
        assert client.models().data

    monkeypatch.setenv("ALVEARE_API_KEY", "alv_live_" + "y" * 39)
    client = alveare.Client()  # the environment wins over the file
    with client, pytest.raises(alveare.AuthenticationError):
        client.models()
    with alveare.Client(api_key=api_key) as client:  # and an argument over both
        assert client.models().data

    monkeypatch.delenv("ALVEARE_API_KEY")
    config.write_text("api_key = [1, 2\n", encoding="utf-8")
    with pytest.raises(alveare.AlveareError, match="config file"):
        alveare.Client(base_url=server.url)


def test_the_package_loads_its_clients_and_httpx_only_when_asked() -> None:
    # The server imports alveare.types for its wire types; httpx (and the rich, click and pygments its
    # import pulls in where installed) must not come with it.
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import alveare.types, alveare.errors\n"
        "print('httpx' in sys.modules)\n"
        "import alveare\n"
        "from alveare import AsyncClient, Client\n"
        "print(alveare.Client is Client, 'Client' in dir(alveare), 'httpx' in sys.modules)\n"
        "try:\n"
        "    alveare.Nope\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", "True True True", "module 'alveare' has no attribute 'Nope'"]
