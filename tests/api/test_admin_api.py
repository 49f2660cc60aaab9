"""The admin API on a live server with the real model, through AdminClient (as the admin TUI uses it)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import httpx
import pytest
from live import LiveServer, free_port

from appliance.admin.local import LocalAdmin
from appliance.admin.reach import open_admin
from appliance.admin.remote import AdminClient
from appliance.core import errors
from appliance.store import Store


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> Iterator[AdminClient]:
    client = AdminClient(server.base_url, server.admin_key, timeout=120)
    yield client
    client.close()


def chat(server: LiveServer, key: str, model: str = "chat", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "temperature": 0, **extra}
    return httpx.post(
        server.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def test_accounts_keys_and_plans(admin: AdminClient) -> None:
    account = admin.create_account("adm-acme", "starter")
    assert (account.name, account.plan, account.spending_cap) == ("adm-acme", "starter", None)
    with pytest.raises(errors.Conflict):
        admin.create_account("adm-acme")
    keys = [admin.create_key("adm-acme") for _ in range(4)] + [admin.create_key("adm-acme", test=True)]
    assert keys[-1].key.startswith("alv_test_") and all(k.key.startswith("alv_live_") for k in keys[:4])
    with pytest.raises(errors.Conflict, match="5 active keys") as info:
        admin.create_key("adm-acme")
    assert info.value.code == "too_many_keys" and info.value.status == 409
    listed = admin.keys("adm-acme")
    assert [k.prefix for k in listed] == [k.prefix for k in keys] and all(k.requests == 0 for k in listed)
    assert all(k.key not in str(listed) for k in keys)
    revoked = admin.revoke_key(keys[0].prefix)
    assert revoked.revoked_at is not None and revoked.prefix == keys[0].prefix
    admin.create_key("adm-acme")  # room again

    assert admin.set_account_plan("adm-acme", "professional").plan == "professional"
    with pytest.raises(errors.NotFound, match="No plan named"):
        admin.set_account_plan("adm-acme", "platinum")
    assert admin.set_spending_cap("adm-acme", 25.5).spending_cap == 25.5
    assert admin.set_spending_cap("adm-acme", None).spending_cap is None
    overview = {o.account.name: o for o in admin.accounts()}["adm-acme"]
    assert overview.active_keys == 5 and overview.usage.plan == "professional" and overview.alert_level == 0

    plan = admin.set_plan("adm-plan", requests_per_minute=7, custom_prompts=True)
    assert (plan.requests_per_minute, plan.requests_per_month, plan.custom_prompts) == (7, 100_000, True)
    plan = admin.set_plan("adm-plan", requests_per_month=1234, monthly_price=9.5)
    assert (plan.requests_per_minute, plan.requests_per_month, plan.monthly_price) == (7, 1234, 9.5)
    assert {p.name: p for p in admin.plans()}["adm-plan"] == plan


def test_usage_breakdown_after_real_requests(server: LiveServer, admin: AdminClient) -> None:
    admin.create_account("adm-usage", "solo")
    key = admin.create_key("adm-usage")
    answers = [chat(server, key.key, "summarise", max_tokens=3) for _ in range(2)]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    tokens = sum(r.json()["usage"]["total_tokens"] for r in answers)
    assert chat(server, key.key, "code").status_code == 403  # not among solo's specialists: metered, failed
    usage = admin.usage("adm-usage")
    assert usage.account == "adm-usage"
    [row] = usage.by_account
    assert (row.name, row.requests, row.tokens, row.failed, row.test) == ("adm-usage", 2, tokens, 1, 0)
    assert [(r.name, r.requests, r.failed) for r in usage.by_key] == [(key.prefix, 2, 1)]
    specialists = {r.name: r for r in usage.by_specialist}
    assert specialists["summarise"].requests == 2 and specialists["summarise"].tokens == tokens
    assert sum(d.requests for d in usage.by_day) == 2 and sum(d.failed for d in usage.by_day) == 1
    assert admin.keys("adm-usage")[0].requests == 3
    everyone = {r.name for r in admin.usage().by_account}
    assert "adm-usage" in everyone
    overview = {o.account.name: o for o in admin.accounts()}["adm-usage"]
    assert overview.usage.requests_used == 2 and overview.usage.failed_requests == 1

    status = admin.hive_status()
    assert status.requests_per_minute >= 3 and status.errors_by_status.get("403", 0) >= 1
    assert len(status.history) == 60 and sum(s.requests for s in status.history) >= 3
    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}).text
    assert 'alveare_api_errors_total{status="403"}' in metrics and "alveare_requests_per_minute" in metrics


def test_specialist_override_applies_to_the_next_request(server: LiveServer, admin: AdminClient) -> None:
    key = server.new_key("adm-override", plan="professional")
    default = {s.name: s for s in admin.specialists()}["chat"]
    assert not default.overridden
    before = chat(server, key, max_tokens=1).json()["usage"]
    try:
        changed = admin.set_specialist("chat", system_prompt="Answer with one word.", max_tokens=2, temperature=0)
        assert changed.overridden and changed.system_prompt == "Answer with one word."
        assert (
            changed.default_system_prompt == default.system_prompt and changed.default_max_tokens == default.max_tokens
        )
        # The next request: the shorter system prompt, and the override's max_tokens as the default.
        after = chat(server, key).json()["usage"]
        assert after["prompt_tokens"] < before["prompt_tokens"] and after["completion_tokens"] <= 2
        info = httpx.get(server.base_url + "/model/info?model=chat", headers={"Authorization": f"Bearer {key}"}).json()
        assert info["system_prompt"] == "Answer with one word." and info["parameters"]["max_tokens"] == 2
    finally:
        reset = admin.reset_specialist("chat")
    assert not reset.overridden and reset.system_prompt == default.system_prompt
    assert chat(server, key, max_tokens=1).json()["usage"]["prompt_tokens"] == before["prompt_tokens"]


def test_custom_prompts(server: LiveServer, admin: AdminClient) -> None:
    key = server.new_key("adm-prompts", plan="professional")
    before = chat(server, key, max_tokens=1).json()["usage"]["prompt_tokens"]
    saved = admin.set_custom_prompt("adm-prompts", "alveare-chat", "Reply in one word.")
    assert (saved.specialist, saved.system_prompt) == ("chat", "Reply in one word.")
    assert [c.specialist for c in admin.custom_prompts("adm-prompts")] == ["chat"]
    assert chat(server, key, max_tokens=1).json()["usage"]["prompt_tokens"] < before
    assert admin.reset_custom_prompt("adm-prompts", "chat") is True
    assert admin.custom_prompts("adm-prompts") == []
    assert chat(server, key, max_tokens=1).json()["usage"]["prompt_tokens"] == before
    admin.create_account("adm-small", "solo")
    with pytest.raises(errors.PermissionDenied) as info:
        admin.set_custom_prompt("adm-small", "chat", "Hi.")
    assert info.value.code == "custom_prompts_not_in_plan"


def test_a_non_admin_key_gets_403(server: LiveServer) -> None:
    key = server.new_key("adm-user", plan="scale")
    with AdminClient(server.url, key) as client, pytest.raises(errors.PermissionDenied) as info:
        client.accounts()
    assert info.value.code == "admin_required" and info.value.status == 403
    r = httpx.get(server.base_url + "/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "admin_required" and error["request_id"] == r.headers["x-request-id"]


def test_a_bad_body_is_400_naming_the_field(server: LiveServer, admin: AdminClient) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    r = httpx.put(server.base_url + "/admin/specialists/chat", json={"temperature": 5}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    r = httpx.put(server.base_url + "/admin/plans/adm-plan", json={"requests_per_minute": "many"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "requests_per_minute"
    with pytest.raises(errors.InvalidRequest) as info:
        admin.set_specialist("chat", max_tokens=0)
    assert info.value.param == "max_tokens"
    assert not {s.name: s for s in admin.specialists()}["chat"].overridden


def test_try_it_streams_real_text(admin: AdminClient) -> None:
    events = list(admin.try_it("code", "Write a Python function that adds two numbers.", max_tokens=12))
    pieces, final = events[:-1], events[-1]
    assert pieces and all(not e.done for e in pieces) and "".join(e.text for e in pieces).strip()
    assert final.done and final.prompt_tokens > 0 and 0 < final.completion_tokens <= 12
    assert final.finish_reason in ("stop", "length")
    assert final.latency_ms >= final.time_to_first_token_ms >= 0
    with pytest.raises(errors.ModelNotFound):
        list(admin.try_it("poet", "hello"))


def test_open_admin_finds_the_server_or_falls_back(server: LiveServer, tmp_path) -> None:
    online = open_admin(server.data_dir, url=server.url)
    try:
        assert isinstance(online, AdminClient) and online.online
        assert online.hive_status().loaded
        key_file = server.data_dir / "tui-admin.key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    finally:
        online.close()
    with open_admin(server.data_dir, url=server.url, admin_key=server.admin_key) as explicit:  # type: ignore[attr-defined]
        assert explicit.plans()
    Store(tmp_path / "data").close()
    offline = open_admin(tmp_path / "data", url=f"http://127.0.0.1:{free_port()}")
    try:
        assert isinstance(offline, LocalAdmin) and not offline.online
        with pytest.raises(errors.ServerUnavailable, match="alveare serve"):
            offline.hive_status()
    finally:
        offline.close()


def test_account_specialists_through_the_api(server: LiveServer, admin: AdminClient) -> None:
    key = server.new_key("adm-chosen", plan="solo")
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    r = httpx.patch(
        server.base_url + "/admin/accounts/adm-chosen", json={"specialists": ["qa", "alveare-chat"]}, headers=headers
    )
    assert r.status_code == 200 and r.json()["specialists"] == ["qa", "chat"]
    assert chat(server, key, "qa").status_code == 200
    refused = chat(server, key, "classify")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "specialist_not_enabled"
    # The same checks as on the data dir: the plan's number, known names, a list or null.
    for body, param in (
        ({"specialists": ["qa", "chat", "code", "classify"]}, "specialists"),
        ({"specialists": ["poetry"]}, "specialists"),
        ({"specialists": "qa"}, "specialists"),
    ):
        r = httpx.patch(server.base_url + "/admin/accounts/adm-chosen", json=body, headers=headers)
        assert r.status_code in (400, 404) and r.json()["error"]["param"] == param, r.text
    assert admin.set_account_specialists("adm-chosen", None).specialists is None
    assert chat(server, key, "classify", max_tokens=1).status_code == 200
