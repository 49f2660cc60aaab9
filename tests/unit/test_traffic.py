"""The traffic ring: 10-second buckets over ten minutes, the last minute, errors by status."""

from __future__ import annotations

import itertools

from appliance.serving.traffic import HISTORY_BUCKETS, Traffic


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_buckets_last_minute_and_errors() -> None:
    clock = Clock(1_000_003.0)
    traffic = Traffic(clock)
    traffic.record(200, 30)
    traffic.record(429, 0)
    clock.t += 12  # the next bucket
    traffic.record(200, 10)
    history = traffic.history()
    assert len(history) == HISTORY_BUCKETS and history[-1].t == 1_000_010
    assert [(s.t, s.tokens, s.requests, s.errors) for s in history[-2:]] == [
        (1_000_000, 30, 2, 1),
        (1_000_010, 10, 1, 0),
    ]
    assert all(s.requests == 0 for s in history[:-2])
    assert [b.t - a.t for a, b in itertools.pairwise(history)] == [10] * (HISTORY_BUCKETS - 1)
    assert traffic.requests_per_minute() == 3
    assert traffic.errors_by_status() == {"429": 1}

    clock.t += 55  # the first two fall out of the last minute
    assert traffic.requests_per_minute() == 1
    clock.t += 600  # and everything out of the ten minutes; the ring slots are reused
    traffic.record(500, 0)
    history = traffic.history()
    assert sum(s.requests for s in history) == 1 and history[-1].errors == 1
    assert traffic.errors_by_status() == {"429": 1, "500": 1} and traffic.requests_total == 4
