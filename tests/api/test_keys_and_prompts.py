"""Keys (format, hashing, the 5-key limit, rotation by prefix), custom system prompts. (kill -9: test_durability.py)"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from live import LiveServer, cli

CHAT = {"model": "summarise", "messages": [{"role": "user", "content": "Sales rose."}], "max_tokens": 1}


def call(server: LiveServer, key: str, method: str = "POST", path: str = "/chat/completions", **kw) -> httpx.Response:
    kw.setdefault("json", CHAT if method == "POST" else None)
    return httpx.request(method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kw)


def test_raw_key_is_nowhere_in_the_database_or_logs(server: LiveServer) -> None:
    key = server.new_key("hash-co", plan="starter")
    assert key.startswith("alv_live_") and len(key) == 48
    assert call(server, key).status_code == 200
    assert call(server, key[:-1] + ("x" if key[-1] != "x" else "y")).status_code == 401
    time.sleep(0.5)
    stored = b"".join(p.read_bytes() for p in server.data_dir.iterdir() if p.name.startswith("alveare.db"))
    assert key.encode() not in stored and key[9:].encode() not in stored
    assert key not in server.log_text() and key[9:] not in server.log_text()
    assert (server.data_dir / "key-secret").stat().st_mode & 0o777 == 0o600


def test_five_keys_at_most_and_rotation_by_prefix(server: LiveServer) -> None:
    keys = [server.new_key("rotate-co", plan="starter") for _ in range(5)]
    sixth = cli(server.data_dir, "admin", "keys", "create", "--account", "rotate-co", check=False)
    assert sixth.returncode == 1 and "5 active keys" in sixth.stderr and sixth.stderr.count("\n") == 1
    # rotation: revoke one, create its replacement, both sides keep working in between
    old, others = keys[0], keys[1:]
    revoked = cli(server.data_dir, "admin", "keys", "revoke", old[:17])
    assert old[:17] in revoked.stdout
    new = server.new_key("rotate-co", plan="starter")
    assert call(server, new).status_code == 200
    r = call(server, old)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert all(call(server, k, "GET", "/models").status_code == 200 for k in others)
    short = cli(server.data_dir, "admin", "keys", "revoke", "alv_", check=False)
    assert short.returncode == 1 and "12 characters" in short.stderr


def test_custom_system_prompts(server: LiveServer) -> None:
    key = server.new_key("prompt-co", plan="professional")
    listed = call(server, key, "GET", "/specialists").json()
    assert listed["custom_prompts_allowed"] is True
    default = next(s for s in listed["data"] if s["name"] == "summarise")
    assert default["custom"] is False and default["enabled"] is True
    before = call(server, key).json()["usage"]["prompt_tokens"]

    prompt = "You are a financial analyst. " * 20
    r = call(server, key, "PUT", "/specialists/summarise", json={"system_prompt": prompt})
    assert r.status_code == 200, r.text
    assert r.json()["custom"] is True and r.json()["system_prompt"] == prompt.strip()
    # in force on the very next request, with no restart
    after = call(server, key).json()["usage"]["prompt_tokens"]
    assert after > before + 50
    listed = call(server, key, "GET", "/specialists").json()
    assert next(s for s in listed["data"] if s["name"] == "summarise")["system_prompt"] == prompt.strip()
    info = call(server, key, "GET", "/model/info", params={"model": "summarise"}).json()
    assert info["system_prompt"] == prompt.strip()
    # another account still gets the default
    other = server.new_key("prompt-other", plan="professional")
    assert call(server, other).json()["usage"]["prompt_tokens"] == before

    r = call(server, key, "DELETE", "/specialists/alveare-summarise")
    assert r.status_code == 200 and r.json()["custom"] is False
    assert call(server, key).json()["usage"]["prompt_tokens"] == before

    for body, status, param in [
        ({"system_prompt": ""}, 400, "system_prompt"),
        ({"system_prompt": "   "}, 400, "system_prompt"),
        ({"system_prompt": "x" * 8001}, 400, "system_prompt"),
        ({}, 400, "system_prompt"),
        ({"system_prompt": 5}, 400, "system_prompt"),
    ]:
        r = call(server, key, "PUT", "/specialists/summarise", json=body)
        assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    r = call(server, key, "PUT", "/specialists/poetry", json={"system_prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

    starter = server.new_key("prompt-starter", plan="starter")
    r = call(server, starter, "PUT", "/specialists/summarise", json={"system_prompt": "Be brief."})
    assert r.status_code == 403 and r.json()["error"]["code"] == "custom_prompts_not_in_plan"
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=server.base_url, api_key=starter, max_retries=0).put(
            "/specialists/summarise", body={"system_prompt": "Be brief."}, cast_to=object
        )


def test_test_keys_cannot_change_the_accounts_prompts(server: LiveServer) -> None:
    live = server.new_key("sandbox-prompts", plan="professional")
    test = server.new_key("sandbox-prompts", plan="professional", test=True)
    before = call(server, live).json()["usage"]["prompt_tokens"]
    for method, kw in (("PUT", {"json": {"system_prompt": "You are a pirate. " * 20}}), ("DELETE", {})):
        r = call(server, test, method, "/specialists/summarise", **kw)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["type"] == "permission_error" and error["code"] == "permission_denied"
        assert "live key" in error["message"] and error["request_id"] == r.headers["x-request-id"]
    # reading still works, and the live key gets what it got before
    listed = call(server, test, "GET", "/specialists")
    assert listed.status_code == 200 and listed.json()["custom_prompts_allowed"] is True
    assert call(server, live).json()["usage"]["prompt_tokens"] == before
    assert not next(s for s in call(server, live, "GET", "/specialists").json()["data"] if s["name"] == "summarise")[
        "custom"
    ]


def test_unknown_fields_in_a_prompt_update_are_named(server: LiveServer) -> None:
    key = server.new_key("fields-co", plan="professional")
    r = call(server, key, "PUT", "/specialists/qa", json={"system_prompt": "Be brief.", "temperature": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature", r.text
    assert "temperature" in r.json()["error"]["message"]
    listed = call(server, key, "GET", "/specialists").json()["data"]
    assert not next(s for s in listed if s["name"] == "qa")["custom"]  # refused, so nothing was set
