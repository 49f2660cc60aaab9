"""The admin API in-process (fake engine): every route, its guard, its envelope, and that the
service applies specialist overrides and counts traffic. Live tests with the real model are in
tests/api/test_admin_api.py."""

from __future__ import annotations

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

ROUTES = [
    ("GET", "/v1/admin/plans", None),
    ("PUT", "/v1/admin/plans/solo", {"requests_per_minute": 5}),
    ("GET", "/v1/admin/accounts", None),
    ("POST", "/v1/admin/accounts", {"name": "x"}),
    ("PATCH", "/v1/admin/accounts/acme", {"plan": "solo"}),
    ("GET", "/v1/admin/accounts/acme/prompts", None),
    ("PUT", "/v1/admin/accounts/acme/prompts/chat", {"system_prompt": "Hi."}),
    ("DELETE", "/v1/admin/accounts/acme/prompts/chat", None),
    ("GET", "/v1/admin/keys", None),
    ("POST", "/v1/admin/keys", {"account": "acme"}),
    ("DELETE", "/v1/admin/keys/alv_live_abcdefgh", None),
    ("GET", "/v1/admin/usage", None),
    ("GET", "/v1/admin/alerts", None),
    ("GET", "/v1/admin/specialists", None),
    ("PUT", "/v1/admin/specialists/chat", {"temperature": 0}),
    ("DELETE", "/v1/admin/specialists/chat", None),
    ("PUT", "/v1/admin/specialists/poet/adapter", None),
    ("DELETE", "/v1/admin/specialists/chat/adapter", None),
    ("GET", "/v1/admin/backup", None),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/admin/audit/verify", None),
]
CHAT = {"model": "summarise", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def api(tmp_path):
    store = Store(tmp_path)
    admin_key = store.ensure_admin().key  # type: ignore[union-attr]
    store.create_account("acme", "solo")
    user_key = store.create_key("acme").key
    app = create_app(Settings(data_dir=str(tmp_path)), engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        yield client, user_key
    store.close()


def envelope(r, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["request_id"] == r.headers["x-request-id"] and "Traceback" not in r.text
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_admin_route_needs_an_admin_key(api, method, path, body) -> None:
    client, user_key = api
    headers = {"Authorization": f"Bearer {user_key}"}
    envelope(client.request(method, path, json=body, headers=headers), 403, "admin_required")
    envelope(client.request(method, path, json=body, headers={"Authorization": ""}), 401, "invalid_api_key")


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_admin_route_answers_an_admin(api, method, path, body) -> None:
    client, _ = api
    r = client.request(method, path, json=body)
    # Success, or an AlveareError in the envelope (no such key, a plan without custom prompts).
    assert r.status_code in (200, 201, 403, 404), r.text
    if r.status_code >= 400:
        envelope(r, r.status_code)


def test_an_adapter_upload_is_checked_before_the_engine_sees_it(api) -> None:
    client, _ = api
    adapter = "/v1/admin/specialists/chat/adapter"
    envelope(client.put(adapter, content=b""), 400, "invalid_request", "file")
    envelope(client.put(adapter, content=b"GGUF", params={"scale": "strong"}), 400, "invalid_request", "scale")
    envelope(client.put(adapter, content=b"GGUF", params={"scale": "0"}), 400, "invalid_request", "scale")
    envelope(client.put("/v1/admin/specialists/poet/adapter", content=b"GGUF"), 404, "specialist_not_found")
    # What the engine refuses (the fake refuses all) is a 400 naming the file, and nothing is kept.
    envelope(client.put(adapter, content=b"GGUF"), 400, "invalid_request", "file")
    assert client.delete(adapter).json() is None


def test_bodies_are_checked_and_fields_named(api) -> None:
    client, _ = api
    envelope(client.put("/v1/admin/specialists/chat", json={"temperature": 3}), 400, "invalid_request", "temperature")
    envelope(
        client.put("/v1/admin/specialists/chat", json={"temperature": "hot"}), 400, "invalid_request", "temperature"
    )
    envelope(client.put("/v1/admin/specialists/chat", json={"top_p": 0}), 400, param="top_p")
    envelope(client.put("/v1/admin/specialists/chat", json={"max_tokens": 5000}), 400, param="max_tokens")
    envelope(client.put("/v1/admin/specialists/chat", json={"system_prompt": ""}), 400, param="system_prompt")
    envelope(client.put("/v1/admin/specialists/poet", json={"temperature": 1}), 404, "specialist_not_found")
    envelope(client.put("/v1/admin/plans/solo", json={"rpm": 3}), 400, param="rpm")
    envelope(client.put("/v1/admin/plans/solo", json={"requests_per_minute": 0}), 400, param="requests_per_minute")
    envelope(client.post("/v1/admin/accounts", json={}), 400, param="name")
    envelope(client.post("/v1/admin/accounts", content=b"{nope"), 400, "invalid_json")
    # Bytes that open like a number or an array are no JSON either, though the wrong type shows first
    # (tests/api/test_abuse.py's random bytes start so about one time in twenty).
    envelope(client.post("/v1/admin/accounts", content=b"5\xff\x00 garbage"), 400, "invalid_json")
    envelope(client.post("/v1/admin/accounts", content=b"[1, \xfe"), 400, "invalid_json")
    envelope(client.post("/v1/admin/accounts", content=b"[" * 100_000), 400, "invalid_json")
    envelope(client.post("/v1/admin/accounts", content=b"[1, 2]"), 400, "invalid_request")  # JSON, wrong type
    envelope(client.patch("/v1/admin/accounts/acme", json={}), 400, "invalid_request")
    envelope(client.patch("/v1/admin/accounts/acme", json={"spending_cap": -5}), 400, param="spending_cap")
    envelope(client.patch("/v1/admin/accounts/nobody", json={"plan": "solo"}), 404, "account_not_found")
    envelope(client.post("/v1/admin/keys", json={"account": "acme", "test": "yes"}), 400, param="test")
    envelope(client.get("/v1/admin/usage?period=March"), 400, param="period")
    envelope(
        client.put("/v1/admin/accounts/acme/prompts/chat", json={"system_prompt": "Hi."}),
        403,
        "custom_prompts_not_in_plan",
    )


def test_round_trip(api) -> None:
    client, _ = api
    assert client.post("/v1/admin/accounts", json={"name": "beta", "plan": "professional"}).status_code == 201
    assert client.patch("/v1/admin/accounts/beta", json={"spending_cap": 20}).json()["spending_cap"] == 20
    r = client.patch("/v1/admin/accounts/beta", json={"plan": "scale", "spending_cap": None}).json()
    assert (r["plan"], r["spending_cap"]) == ("scale", None)
    created = client.post("/v1/admin/keys", json={"account": "beta", "test": True}).json()
    assert created["key"].startswith("alv_test_") and created["test"] is True
    keys = client.get("/v1/admin/keys?account=beta").json()
    assert [k["prefix"] for k in keys] == [created["prefix"]] and keys[0]["requests"] == 0
    assert client.delete(f"/v1/admin/keys/{created['prefix']}").json()["revoked_at"] is not None
    prompt = client.put("/v1/admin/accounts/beta/prompts/qa", json={"system_prompt": "Cite."}).json()
    assert prompt["specialist"] == "qa"
    assert [c["specialist"] for c in client.get("/v1/admin/accounts/beta/prompts").json()] == ["qa"]
    assert client.delete("/v1/admin/accounts/beta/prompts/qa").json() == {"deleted": True}
    plan = client.put("/v1/admin/plans/tiny", json={"requests_per_minute": 3, "custom_prompts": True}).json()
    assert plan["name"] == "tiny" and plan["requests_per_minute"] == 3
    overview = {o["account"]["name"]: o for o in client.get("/v1/admin/accounts").json()}
    assert overview["beta"]["usage"]["plan"] == "scale" and overview["acme"]["active_keys"] == 1


def test_overrides_apply_to_the_next_request_and_traffic_is_counted(api) -> None:
    client, user_key = api
    user = {"Authorization": f"Bearer {user_key}"}
    before = client.post("/v1/chat/completions", json=CHAT, headers=user).json()["usage"]["prompt_tokens"]
    # The fake engine counts characters: a one-word prompt is far shorter than the default.
    client.put("/v1/admin/specialists/summarise", json={"system_prompt": "Be brief."})
    after = client.post("/v1/chat/completions", json=CHAT, headers=user).json()["usage"]["prompt_tokens"]
    assert after < before
    info = client.get("/v1/model/info?model=summarise", headers=user).json()
    assert info["system_prompt"] == "Be brief."
    assert client.delete("/v1/admin/specialists/summarise").json()["overridden"] is False
    assert client.post("/v1/chat/completions", json=CHAT, headers=user).json()["usage"]["prompt_tokens"] == before
    # The solo account (classify, summarise, extract) may not use `code`; the admin key may use every specialist.
    envelope(client.post("/v1/chat/completions", json={**CHAT, "model": "code"}, headers=user), 403)
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "code"}).status_code == 200

    status = client.get("/v1/hive/status").json()
    assert status["requests_per_minute"] == 5 and status["errors_by_status"] == {"403": 1}
    assert len(status["history"]) == 60 and sum(s["requests"] for s in status["history"]) == 5
    assert status["history"][-1]["errors"] + status["history"][-2]["errors"] == 1
    usage = client.get("/v1/admin/usage").json()
    assert {r["name"]: r["requests"] for r in usage["by_account"]} == {"acme": 3, "admin": 1}
    assert {r["name"]: r["failed"] for r in usage["by_account"]}["acme"] == 1
    metrics = client.get("/metrics").text
    assert 'alveare_api_errors_total{status="403"} 1' in metrics and "alveare_requests_per_minute 5" in metrics


def test_the_route_list_above_is_every_admin_route(api) -> None:
    import re

    client, _ = api
    served = set()
    for route in client.app.routes:
        if route.path.startswith("/v1/admin"):
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", route.path)
            served |= {(m, pattern) for m in route.methods if m not in ("HEAD", "OPTIONS")}
    covered = {
        (m, pattern)
        for m, pattern in served
        for method, path, _ in ROUTES
        if method == m and re.fullmatch(pattern, path)
    }
    assert served == covered and len(served) == len(ROUTES)


def test_the_openapi_schema_still_builds(api) -> None:
    client, _ = api
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200 and "/v1/admin/accounts" in r.json()["paths"]


def test_every_authenticated_request_marks_its_keys_last_use(api) -> None:
    # Not only inference: an admin key that only ever manages, or an app that lists models, shows as used.
    client, user_key = api
    assert client.get("/v1/admin/accounts").status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {user_key}"}).status_code == 200
    client.app.state.store.flush().result()
    keys = {k.account: k for k in client.app.state.store.keys(None)}
    assert keys["admin"].last_used_at is not None and keys["acme"].last_used_at is not None
    assert keys["acme"].requests == 0  # marked, not metered
