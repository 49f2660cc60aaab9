"""Rate limits, headers, quota, spending cap, test keys and usage exactness, on the live server."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from live import LiveServer, cli

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
HEADERS = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


def post(server: LiveServer, key: str, path: str = "/chat/completions", body: dict | None = None) -> httpx.Response:
    return httpx.post(
        server.base_url + path, json=body or CHAT, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def account_on_plan(server: LiveServer, account: str, plan: str, *plan_args: str, test: bool = False) -> str:
    cli(server.data_dir, "admin", "plans", "set", plan, *plan_args)
    return server.new_key(account, plan=plan, test=test)


def usage(server: LiveServer, key: str) -> dict:
    r = httpx.get(server.base_url + "/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def admin_usage(server: LiveServer, account: str) -> dict:
    return json.loads(cli(server.data_dir, "admin", "usage", "--account", account, "--json").stdout)


def assert_rate_headers(r: httpx.Response) -> None:
    for h in HEADERS:
        assert h in r.headers, (h, dict(r.headers))
    for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert DURATION.match(r.headers[h]), r.headers[h]
    for h in HEADERS[:2] + HEADERS[3:5]:
        assert int(r.headers[h]) >= 0


def test_parallel_burst_admits_exactly_the_limit_then_sdk_retry_succeeds(server: LiveServer) -> None:
    key = account_on_plan(server, "burst", "burst10", "--rpm", "10", "--tpm", "1000000")
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: post(server, key), range(16)))
    # admitted: answered, or (on a loaded machine) timed out after admission
    admitted = [r for r in responses if r.status_code != 429]
    limited = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(limited)) == (10, 6), [r.status_code for r in responses]
    for r in responses:
        assert_rate_headers(r)
        assert r.headers["x-ratelimit-limit-requests"] == "10"
        assert r.headers["x-ratelimit-limit-tokens"] == "1000000"
    # each admitted request saw the allowance it left: 9, 8, ... 0
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted) == list(range(10))
    for r in limited:
        error = r.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        # 10 per minute: one more every 6 s
        assert 1 <= int(r.headers["retry-after"]) <= 6
        assert 0 < int(r.headers["retry-after-ms"]) <= 6000
        assert int(r.headers["retry-after"]) == -(-int(r.headers["retry-after-ms"]) // 1000)

    # Use up the allowance (it refills while slow requests run) until the next one is seconds away...
    for _ in range(20):
        r = post(server, key)
        if r.status_code == 429:
            if int(r.headers["retry-after-ms"]) >= 2000:
                break
            time.sleep(int(r.headers["retry-after-ms"]) / 1000 + 0.05)
    assert r.status_code == 429
    # ...then the SDK without retries fails at once, and with retries waits for Retry-After and succeeds.
    statuses: list[int] = []
    http_client = httpx.Client(event_hooks={"response": [lambda resp: statuses.append(resp.status_code)]})
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(
            base_url=server.base_url, api_key=key, max_retries=0, http_client=http_client
        ).chat.completions.create(**CHAT)
    t0 = time.monotonic()
    sdk = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=2, http_client=http_client, timeout=120)
    reply = sdk.chat.completions.with_raw_response.create(**CHAT)
    assert reply.status_code == 200
    assert statuses == [429, 429, 200], statuses
    assert time.monotonic() - t0 >= 1.5  # it waited for Retry-After rather than hammering


def test_every_authenticated_response_has_rate_headers(server: LiveServer, api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    for r in (
        httpx.get(server.base_url + "/models", headers=auth),
        httpx.get(server.base_url + "/usage", headers=auth),
        post(server, api_key, body={**CHAT, "model": "nope"}),
        post(server, api_key, body={**CHAT, "temperature": 9}),
        httpx.get(server.base_url + "/hive/status", headers=auth),
    ):
        assert_rate_headers(r)
        assert r.headers["x-ratelimit-limit-requests"] == "2000"
    unauthenticated = httpx.get(server.base_url + "/models")
    assert unauthenticated.status_code == 401
    assert "x-ratelimit-limit-requests" not in unauthenticated.headers


def test_test_keys_have_lower_limits_and_are_not_counted(server: LiveServer) -> None:
    live = server.new_key("sandbox-co", plan="solo")
    test = server.new_key("sandbox-co", plan="solo", test=True)
    assert test.startswith("alv_test_") and len(test) == 48
    r = post(server, test, body={**CHAT, "model": "classify"})
    assert r.status_code == 200, r.text
    assert r.headers["x-ratelimit-limit-requests"] == "5"  # a quarter of solo's 20
    assert r.headers["x-ratelimit-limit-tokens"] == "10000"
    assert post(server, live, body={**CHAT, "model": "classify"}).headers["x-ratelimit-limit-requests"] == "20"
    u = usage(server, test)
    assert (u["requests_used"], u["test_requests"]) == (1, 1)
    assert u["by_specialist"] == {"classify": 1}
    # past the test key's 5 a minute: the refusals (429) are not test requests
    statuses = [post(server, test, body={**CHAT, "model": "classify"}).status_code for _ in range(8)]
    assert 429 in statuses and set(statuses) <= {200, 429}
    assert usage(server, test)["test_requests"] == 1 + statuses.count(200)


def test_quota_overage_alerts_webhook_and_spending_cap(server: LiveServer, webhook) -> None:
    key = account_on_plan(server, "tinyq-co", "tinyq", "--monthly", "4", "--overage", "1")
    test_key = server.new_key("tinyq-co", plan="tinyq", test=True)
    for _ in range(6):
        r = post(server, key)
        assert r.status_code == 200, r.text  # past the quota requests keep working, as overage
    u = usage(server, key)
    assert (u["requests_used"], u["requests_limit"], u["overage_requests"]) == (6, 4, 2)
    assert u["spending"] == pytest.approx(0.002) and u["spending_cap"] is None
    report = admin_usage(server, "tinyq-co")
    assert [a["threshold"] for a in report["alerts"]] == [75, 90, 100]
    assert [a["requests_used"] for a in report["alerts"]] == [3, 4, 4]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([p for p in webhook.posts if p["account"] == "tinyq-co"]) < 3:
        time.sleep(0.1)
    posted = [p for p in webhook.posts if p["account"] == "tinyq-co"]
    assert sorted(p["threshold_percent"] for p in posted) == [75, 90, 100]
    assert "usage alert: account tinyq-co reached 75%" in server.log_text()

    # The cap is reached: 429 insufficient_quota, and the SDK does not retry it.
    cli(server.data_dir, "admin", "accounts", "set-cap", "tinyq-co", "0.002")
    r = post(server, key)
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert r.headers["x-should-retry"] == "false"
    statuses: list[int] = []
    http_client = httpx.Client(event_hooks={"response": [lambda resp: statuses.append(resp.status_code)]})
    sdk = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=2, http_client=http_client)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(**CHAT)
    assert info.value.code == "insufficient_quota" and statuses == [429]
    # sandbox keys are not billed, so the cap does not stop them
    assert post(server, test_key).status_code == 200
    cli(server.data_dir, "admin", "accounts", "set-cap", "tinyq-co", "0.003")
    assert post(server, key).status_code == 200
    assert post(server, key).status_code == 429
    u = usage(server, key)
    assert (u["requests_used"], u["overage_requests"], u["test_requests"]) == (7, 3, 1)
    # no alert twice in a period
    assert len(admin_usage(server, "tinyq-co")["alerts"]) == 3


def test_usage_is_exact_after_a_parallel_burst(server: LiveServer) -> None:
    key = server.new_key("usage-co", plan="scale")
    bodies = [
        ("/chat/completions", {**CHAT, "model": "chat"}),
        ("/chat/completions", {**CHAT, "model": "alveare-qa"}),
        ("/infer", {"specialist": "summarise", "prompt": "Sales rose.", "max_tokens": 1}),
        ("/completions", {"model": "code", "prompt": "def f(", "max_tokens": 1}),
    ] * 5
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda pb: post(server, key, *pb), bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    tokens = sum(
        r.json()["usage"]["total_tokens"] if "usage" in r.json() else r.json()["tokens_used"] for r in responses
    )
    u = usage(server, key)
    assert set(u) >= {"period_start", "period_end", "requests_used", "requests_limit", "tokens_used", "by_specialist"}
    assert re.match(r"^\d{4}-\d{2}-01T00:00:00Z$", u["period_start"])
    assert re.match(r"^\d{4}-\d{2}-(28|29|30|31)T23:59:59Z$", u["period_end"])
    assert u["requests_used"] == 20 and u["requests_limit"] == 2_000_000
    assert u["tokens_used"] == tokens
    assert u["by_specialist"] == {"chat": 5, "code": 5, "qa": 5, "summarise": 5}
    report = admin_usage(server, "usage-co")["usage"][0]
    assert (report["requests_used"], report["tokens_used"]) == (20, tokens)
    # failures are recorded too, but not counted
    assert post(server, key, body={**CHAT, "model": "nope"}).status_code == 404
    assert usage(server, key)["requests_used"] == 20
    assert admin_usage(server, "usage-co")["usage"][0]["failed_requests"] == 1


def test_specialists_not_enabled_are_403(server: LiveServer) -> None:
    key = server.new_key("solo-co", plan="solo")
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["alveare-classify", "alveare-summarise", "alveare-extract"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(**CHAT)
    assert info.value.code == "specialist_not_enabled"
    cli(server.data_dir, "admin", "accounts", "set-specialists", "solo-co", "chat,qa")
    assert [m.id for m in client.models.list()] == ["alveare-qa", "alveare-chat"]
    assert client.chat.completions.create(**CHAT).choices
    assert post(server, key, "/infer", {"specialist": "classify", "prompt": "x"}).status_code == 403
