from __future__ import annotations

import pytest

from appliance.engine.speculative.drafting import Acceptance, StepCosts, choose


def measured(**by_size: float) -> StepCosts:
    costs = StepCosts()
    for size, seconds in by_size.items():
        costs.observe(int(size.removeprefix("n")), seconds)
    return costs


def test_cost_is_measured_interpolated_and_extrapolated() -> None:
    costs = measured(n1=0.008, n2=0.012, n4=0.020)
    assert costs.cost(1) == 0.008
    assert costs.cost(3) == pytest.approx(0.016)
    assert costs.cost(6) == pytest.approx(0.028)  # the last measured slope, 4 ms a row
    assert StepCosts().cost(3) == pytest.approx(2.0)  # unmeasured: half a step per extra row


def test_running_mean_follows_the_machine() -> None:
    costs = measured(n1=0.010)
    for _ in range(100):
        costs.observe(1, 0.005)
    assert costs.cost(1) == pytest.approx(0.005, rel=0.01)


def test_cheap_rows_take_long_drafts_and_dear_rows_only_likely_ones() -> None:
    gpu = measured(n1=0.010, n2=0.0101, n8=0.0105)  # batch rows nearly free
    assert choose(gpu, 1, [("a", 6, 0.6)], room=100) == {"a": 6}
    cpu = measured(n1=0.008, n2=0.0125, n3=0.017, n4=0.0215)  # every row 4.5 ms
    assert choose(cpu, 1, [("a", 6, 0.3)], room=100) == {}
    likely = choose(cpu, 1, [("a", 6, 0.95)], room=100)
    assert 1 <= likely["a"] < 6


def test_most_likely_request_first_and_room_respected() -> None:
    gpu = measured(n1=0.010, n2=0.0101, n8=0.0105)
    assert choose(gpu, 2, [("a", 3, 0.2), ("b", 3, 0.9)], room=2) == {"b": 2}


def test_acceptance_starts_from_a_prior_and_learns() -> None:
    a = Acceptance()
    assert 0 < a.rate < 1
    a.record(20, 20)
    assert a.rate > 0.9
    a.record(100, 0)
    assert a.rate < 0.2
