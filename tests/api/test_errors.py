"""Every error status the API promises, in the one envelope, through the official SDK and raw HTTP."""

from __future__ import annotations

import random
import threading
import time

import httpx
import openai
import pytest
from live import LiveServer, start_server

MSG = [{"role": "user", "content": "Hello"}]


def assert_envelope(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["message"] and "Traceback" not in error["message"]
    assert error["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def post(server: LiveServer, key: str | None, path: str, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(server.base_url + path, headers=headers, timeout=60, **kwargs)


def test_missing_malformed_unknown_and_revoked_keys(server: LiveServer) -> None:
    body = {"model": "chat", "messages": MSG}
    assert_envelope(post(server, None, "/chat/completions", json=body), 401, "invalid_api_key")
    assert_envelope(post(server, "sk-not-ours", "/chat/completions", json=body), 401, "invalid_api_key")
    # right shape, wrong checksum
    fake = "alv_live_" + "A" * 39
    assert_envelope(post(server, fake, "/chat/completions", json=body), 401, "invalid_api_key")
    key = server.new_key("revoked-account")
    assert post(server, key, "/chat/completions", json={**body, "max_tokens": 1}).status_code == 200
    from live import cli

    cli(server.data_dir, "admin", "keys", "revoke", key[:17])
    error = assert_envelope(post(server, key, "/chat/completions", json=body), 401, "invalid_api_key")
    assert key not in error["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0).models.list()


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-neo-unknown", messages=MSG)
    assert info.value.body["code"] == "model_not_found"
    assert info.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "chat", "messages": MSG, "temperature": 2.5}, "temperature"),
        ({"model": "chat", "messages": MSG, "top_p": 1.5}, "top_p"),
        ({"model": "chat", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "chat", "messages": MSG, "max_tokens": 5000}, "max_tokens"),
        ({"model": "chat", "messages": MSG, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "chat", "messages": []}, "messages"),
        ({"model": "chat"}, "messages"),
        ({"messages": MSG}, "model"),
        ({"model": "chat", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "chat", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "chat", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {"model": "chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(server: LiveServer, api_key: str, body: dict, param: str) -> None:
    assert_envelope(post(server, api_key, "/chat/completions", json=body), 400, param=param)


def test_bad_json_is_400(server: LiveServer, api_key: str) -> None:
    assert_envelope(post(server, api_key, "/chat/completions", content=b"{not json"), 400, "invalid_json")
    assert_envelope(post(server, api_key, "/infer", content=b""), 400, "invalid_json")
    assert_envelope(post(server, api_key, "/infer", json={"specialist": "chat"}), 400, param="prompt")
    assert_envelope(post(server, api_key, "/infer", json={"specialist": "poet", "prompt": "x"}), 404, "model_not_found")


def test_bodies_that_break_the_decoder_are_400(server: LiveServer, api_key: str) -> None:
    """Invalid UTF-8 and very deep nesting are the client's fault on every route that reads a body."""
    admin = server.admin_key
    server.new_key("deep-co", plan="professional")
    # each route with a field it reads, so the bad UTF-8 sits in a value the decoder must decode
    routes = [
        (api_key, "POST", "/chat/completions", "model"),
        (api_key, "POST", "/completions", "prompt"),
        (api_key, "POST", "/infer", "prompt"),
        (api_key, "PUT", "/specialists/qa", "system_prompt"),
        (admin, "PUT", "/admin/accounts/deep-co/prompts/qa", "system_prompt"),
        (admin, "PUT", "/admin/specialists/qa", "system_prompt"),
        (admin, "POST", "/admin/keys", "account"),
    ]
    for key, method, path, field in routes:
        deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
        deep_in_a_field = b'{"' + field.encode() + b'": ' + deep_object + b"}"
        bad_utf8 = b'{"' + field.encode() + b'": "caf\xe9 \xff"}'
        for body, code in (
            (bad_utf8, "invalid_json"),
            (deep_object, None),
            (deep_in_a_field, None),
            (b"[" * 10_000 + b"]" * 10_000, None),
        ):
            r = httpx.request(
                method, server.base_url + path, content=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            assert_envelope(r, 400, code)
    log = server.log_text()
    assert "RecursionError" not in log and "UnicodeDecodeError" not in log and "Traceback" not in log


def test_user_message_without_content_is_400(server: LiveServer, api_key: str) -> None:
    for messages, param in [
        ([{"role": "user", "content": None}], "messages[0].content"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "system", "content": None}, {"role": "user", "content": "Hi"}], "messages[0].content"),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant"}], "messages[1].content"),
    ]:
        r = post(server, api_key, "/chat/completions", json={"model": "chat", "messages": messages})
        assert_envelope(r, 400, "invalid_request", param=param)


def test_a_long_unknown_model_name_is_not_echoed_whole(server: LiveServer, api_key: str) -> None:
    name = "m" * 10_000
    error = assert_envelope(
        post(server, api_key, "/chat/completions", json={"model": name, "messages": MSG}), 404, "model_not_found"
    )
    assert "m" * 100 + "…" in error["message"] and "m" * 101 not in error["message"]


def test_head_health_is_200_without_a_body(server: LiveServer) -> None:
    r = httpx.head(server.url + "/health")
    assert r.status_code == 200 and r.content == b"" and r.headers["x-request-id"]


def test_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat", messages=MSG, temperature=3)
    assert info.value.body["param"] == "temperature"


def test_body_over_limit_is_413(server: LiveServer, api_key: str) -> None:
    huge = {"model": "chat", "messages": [{"role": "user", "content": "x" * 2_000_000}]}
    assert_envelope(post(server, api_key, "/chat/completions", json=huge), 413, "request_too_large")


def test_prompt_too_long_is_context_length_exceeded(server: LiveServer, api_key: str) -> None:
    long = {"model": "chat", "messages": [{"role": "user", "content": "word " * 9000}]}
    assert_envelope(post(server, api_key, "/chat/completions", json=long), 400, "context_length_exceeded")
    fits_alone = {"model": "chat", "messages": [{"role": "user", "content": "word " * 5000}], "max_tokens": 4096}
    assert_envelope(post(server, api_key, "/chat/completions", json=fits_alone), 400, "context_length_exceeded")


def test_unknown_route_and_wrong_method(server: LiveServer, api_key: str) -> None:
    assert_envelope(httpx.get(server.base_url + "/nowhere", headers={"Authorization": f"Bearer {api_key}"}), 404)
    assert_envelope(
        httpx.get(server.base_url + "/chat/completions", headers={"Authorization": f"Bearer {api_key}"}), 405
    )


def test_request_id_is_echoed_when_sane(server: LiveServer) -> None:
    r = httpx.get(server.url + "/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = httpx.get(server.url + "/health", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"].startswith("req_")


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory):
    """One slot, a one-request queue and a 1.5 s timeout: easy to time out and to overload."""
    live = start_server(tmp_path_factory.mktemp("tight"), "--slots", "1", "--queue", "1", "--timeout", "1.5")
    try:
        yield live
    finally:
        live.stop()


def slow_request() -> dict:
    """A request that cannot finish within 1.5 s of its first token whatever the model samples: the
    end-of-turn tokens are banned, so it runs to its 1000 tokens unless the server stops it."""
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": f"Count from one to a thousand in words. ({random.random()})"}],
        "max_tokens": 1000,
        "logit_bias": {"0": -100, "2": -100, "4": -100},  # SmolLM2's end-of-generation tokens
    }


def test_timeout_is_504_and_streams_end_with_an_error(tight_server: LiveServer) -> None:
    key = tight_server.new_key("slow")
    t0 = time.monotonic()
    assert_envelope(post(tight_server, key, "/chat/completions", json=slow_request()), 504, "timeout")
    assert time.monotonic() - t0 < 60  # stopped 1.5 s after the first token, not after the 1000 tokens
    client = openai.OpenAI(base_url=tight_server.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(**slow_request(), stream=True):
            pass
    assert "limit" in str(info.value)


def test_a_request_that_cannot_start_in_time_is_503_at_once_with_retry_after(tight_server: LiveServer) -> None:
    """With the one slot held by a long answer, the next request could start only after the 1.5 s
    limit: refused at once (503 with Retry-After), not queued to wait for a 504."""
    key = tight_server.new_key("busy")
    results: list[int] = []

    def occupy() -> None:
        results.append(post(tight_server, key, "/chat/completions", json=slow_request()).status_code)

    holder = threading.Thread(target=occupy)
    holder.start()
    time.sleep(0.5)  # in the slot, its steps timed
    t0 = time.monotonic()
    r = post(tight_server, key, "/chat/completions", json=slow_request())
    assert time.monotonic() - t0 < 1.0
    assert_envelope(r, 503, "server_overloaded")
    assert int(r.headers["retry-after"]) >= 1
    holder.join()
    assert results == [504]  # the started answer runs past the limit after its first token


def test_health_stays_responsive_during_generation(tight_server: LiveServer) -> None:
    key = tight_server.new_key("health-check")
    t = threading.Thread(target=post, args=(tight_server, key, "/chat/completions"), kwargs={"json": slow_request()})
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert httpx.get(tight_server.url + "/health", timeout=5).status_code == 200
    assert time.monotonic() - t0 < 2.0  # not blocked behind the generation
    t.join()
