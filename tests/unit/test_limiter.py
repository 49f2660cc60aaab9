from __future__ import annotations

import pytest

from appliance.core.errors import QuotaExceeded, RateLimited
from appliance.core.limits import QuotaBook, RateLimiter, duration, key_limits


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_duration_formats_like_openai() -> None:
    assert duration(0) == "0ms"
    assert duration(0.0204) == "21ms"
    assert duration(1) == "1s"
    assert duration(59.5) == "59.5s"
    assert duration(360) == "6m0s"
    assert duration(90.25) == "1m30.25s"
    assert duration(3723) == "1h2m3s"


def test_exactly_the_limit_in_a_burst_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    admitted = []
    for _ in range(25):
        try:
            admitted.append(limiter.admit(1, 20, 10_000, 10))
        except RateLimited as exc:
            refused = exc
    assert len(admitted) == 20
    assert [a.state.remaining_requests for a in admitted] == list(range(19, -1, -1))
    assert admitted[-1].state.reset_requests_s == pytest.approx(60)
    # the next request is allowed 3 s after the burst (60 s / 20)
    assert refused.headers["Retry-After"] == "3" and refused.headers["retry-after-ms"] == "3000"
    assert "requests" in refused.message
    # another key is not affected
    limiter.admit(2, 20, 10_000, 10)
    clock.t += 2.9
    with pytest.raises(RateLimited):
        limiter.admit(1, 20, 10_000, 10)
    clock.t += 0.1
    assert limiter.admit(1, 20, 10_000, 10).state.remaining_requests == 0
    clock.t += 60
    assert limiter.peek(1, 20, 10_000).remaining_requests == 20


def test_tokens_are_estimated_then_settled() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    a = limiter.admit(1, 100, 1000, 600)
    assert a.state.remaining_tokens == 400
    with pytest.raises(RateLimited, match="tokens") as info:
        limiter.admit(1, 100, 1000, 600)
    assert int(info.value.headers["Retry-After"]) == 12  # 200 tokens at 1000/min
    limiter.settle(a, 50)
    limiter.settle(a, 50)  # settling twice changes nothing
    assert limiter.peek(1, 100, 1000).remaining_tokens == 950
    limiter.admit(1, 100, 1000, 600)
    with pytest.raises(RateLimited, match="too large") as info:
        limiter.admit(1, 100, 1000, 1001)
    assert info.value.headers["x-should-retry"] == "false"


def test_refusal_consumes_nothing() -> None:
    limiter = RateLimiter(Clock())
    limiter.admit(1, 2, 100, 90)
    with pytest.raises(RateLimited):
        limiter.admit(1, 2, 100, 20)  # tokens refuse; the request allowance must stay
    assert limiter.peek(1, 2, 100).remaining_requests == 1


def test_test_keys_get_a_quarter() -> None:
    assert key_limits(20, 40_000, test=True) == (5, 10_000)
    assert key_limits(2, 3, test=True) == (1, 1)
    assert key_limits(20, 40_000, test=False) == (20, 40_000)


def test_quota_overage_cap_and_alerts() -> None:
    book = QuotaBook()

    def load():
        return 2, set()

    kw = {"monthly_limit": 4, "overage_per_1k": 1000.0}
    results = []
    for _ in range(4):
        hold = book.reserve(7, "2026-03", load, cap=None, **kw)
        results.append(book.commit(hold, 4))
    assert [r.overage for r in results] == [False, False, True, True]
    assert [r.new_alerts for r in results] == [[75], [90, 100], [], []]
    # used 6 of 4: spending 2 * 1000/1000 = 2; a cap of 3 allows one more, held or not
    hold = book.reserve(7, "2026-03", load, cap=3.0, **kw)
    with pytest.raises(QuotaExceeded) as info:
        book.reserve(7, "2026-03", load, cap=3.0, **kw)
    assert info.value.headers["x-should-retry"] == "false"
    book.release(hold)
    book.release(hold)
    book.reserve(7, "2026-03", load, cap=3.0, **kw)
    # a new period starts from the store's count again
    assert book.used(7, "2026-04", lambda: (0, set())) == 0


def test_cap_zero_stops_at_the_quota() -> None:
    book = QuotaBook()
    kw = {"monthly_limit": 2, "overage_per_1k": 5.0, "cap": 0.0}
    for _ in range(2):
        book.commit(book.reserve(1, "p", lambda: (0, set()), **kw), 2)
    with pytest.raises(QuotaExceeded):
        book.reserve(1, "p", lambda: (0, set()), **kw)
