"""The retry rules, live: a burst past a solo key's limit completes through retries; what must not be
retried is sent once. The policy's arithmetic is checked directly (no server can be asked for a 502)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from live import LiveServer

import alveare
from alveare._shared import MAX_RETRY_AFTER_S, retry_wait
from alveare.errors import error_from_response

pytestmark = pytest.mark.slow


class Counter:
    """httpx event hooks: every request sent and every status received, in order."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=120, event_hooks={"response": [lambda r: self.statuses.append(r.status_code)]})


# Solo keys may send 20 requests a minute, then one every 3 s. A burst of 22 at once has 2 refused with
# Retry-After/retry-after-ms; each waits as told and asks again (one gets in per 3 s, so the last
# needs 2 retries), and the caller sees only answers.
BURST = 22


def test_a_burst_past_a_solo_key_limit_completes_through_retries(server: LiveServer, solo_key: str) -> None:
    seen = Counter()
    with (
        alveare.Client(api_key=solo_key, base_url=server.url, http_client=seen.client(), max_retries=8) as client,
        ThreadPoolExecutor(BURST) as pool,
    ):
        answers = list(pool.map(lambda i: client.infer("classify", f"Message {i}: fine.", max_tokens=1), range(BURST)))
        assert all(a.tokens_used > 0 for a in answers)
        assert seen.statuses.count(429) >= BURST - 20  # the limit was reached, and retried through
        assert seen.statuses.count(200) == BURST


@pytest.mark.anyio
async def test_an_async_burst_completes_through_retries(server: LiveServer) -> None:
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    http = httpx.AsyncClient(timeout=120, event_hooks={"response": [record]})
    key = server.new_key("sdk-solo-async", plan="solo")
    async with alveare.AsyncClient(api_key=key, base_url=server.url, http_client=http, max_retries=8) as client:
        answers = await asyncio.gather(*(client.infer("classify", f"Note {i}.", max_tokens=1) for i in range(BURST)))
    await http.aclose()
    assert len(answers) == BURST and statuses.count(200) == BURST and 429 in statuses


def test_errors_the_caller_must_fix_are_sent_once(server: LiveServer, api_key: str) -> None:
    seen = Counter()
    with alveare.Client(api_key=api_key, base_url=server.url, http_client=seen.client(), max_retries=5) as client:
        with pytest.raises(alveare.NotFoundError):
            client.infer("astrology", "x")
        with pytest.raises(alveare.BadRequestError):
            client.infer("qa", "x", max_tokens=0)
        with pytest.raises(alveare.PermissionDeniedError):
            client.hive_status()
    bad = alveare.Client(api_key="alv_live_" + "x" * 39, base_url=server.url, http_client=seen.client())
    with bad, pytest.raises(alveare.AuthenticationError):
        bad.models()
    assert seen.statuses == [404, 400, 403, 401]


def err(status: int, body: bytes = b"{}", **headers: str) -> alveare.AlveareError:
    return error_from_response(status, body, headers)


def no_jitter() -> float:
    return 0.0


def test_policy_retries_what_may_pass_with_exponential_backoff() -> None:
    for status in (429, 500, 502, 503, 504):
        assert retry_wait(err(status), 0, 2, no_jitter) == 0.5
    assert [retry_wait(err(500), n, 9, no_jitter) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert retry_wait(err(500), 2, 2) is None  # max_retries reached
    # Jitter shortens the wait by up to a quarter, so clients that failed together come back apart.
    assert 0.375 <= retry_wait(err(503), 0, 2) <= 0.5  # type: ignore[operator]
    connection = alveare.APIConnectionError("refused")
    assert retry_wait(connection, 0, 2, no_jitter) == 0.5


def test_policy_honours_retry_after() -> None:
    assert retry_wait(err(429, **{"retry-after-ms": "2500", "retry-after": "3"}), 0, 2, no_jitter) == 2.5
    assert retry_wait(err(429, **{"retry-after": "3"}), 0, 2, no_jitter) == 3.0
    assert retry_wait(err(503, **{"retry-after": "1"}), 0, 2, lambda: 1.0) == 1.25
    assert retry_wait(err(429, **{"retry-after": str(MAX_RETRY_AFTER_S + 1)}), 0, 2) is None


def test_policy_never_retries_what_cannot_pass() -> None:
    for status in (400, 401, 403, 404, 409, 413):
        assert retry_wait(err(status), 0, 2) is None
    assert retry_wait(err(429, **{"x-should-retry": "false"}), 0, 2) is None
    quota = err(429, b'{"error": {"message": "cap", "code": "insufficient_quota"}}')
    assert isinstance(quota, alveare.QuotaExceededError) and retry_wait(quota, 0, 2) is None
    assert retry_wait(alveare.APITimeoutError("slow"), 0, 2) is None
    assert retry_wait(err(409, **{"x-should-retry": "true"}), 0, 2, no_jitter) == 0.5


def test_error_classes_from_envelopes() -> None:
    body = b'{"error": {"message": "Slow down.", "type": "rate_limit_error", "code": "rate_limit_exceeded",'
    body += b' "param": null, "request_id": "req_1"}}'
    limited = err(429, body, **{"Retry-After": "2", "retry-after-ms": "1500"})
    assert isinstance(limited, alveare.RateLimitError) and limited.retry_after == 1.5
    assert (limited.status, limited.code, limited.request_id, limited.message) == (
        429,
        "rate_limit_exceeded",
        "req_1",
        "Slow down.",
    )
    assert isinstance(err(503), alveare.OverloadedError) and isinstance(err(503), alveare.ServerError)
    assert isinstance(err(504), alveare.APITimeoutError)
    assert isinstance(err(502, b"<html>Bad gateway</html>"), alveare.ServerError)
    assert err(502, b"<html>Bad gateway</html>").message == "<html>Bad gateway</html>"
    assert isinstance(err(422), alveare.BadRequestError)
    assert err(500, b"", **{"x-request-id": "req_2"}).request_id == "req_2"
