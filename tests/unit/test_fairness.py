"""The fair queue and the wait estimate, without a model: who is admitted next, who gives a slot up,
and when a newcomer is refused."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from appliance.core.errors import Overloaded
from appliance.engine.admission import MIN_STEPS, Admission, WaitEstimate
from appliance.engine.fairness import FairQueue, Waiting
from appliance.engine.interface import GenerationRequest, Share


def req(flow: str, weight: float = 1.0, *, prompt: int = 4, max_tokens: int = 16, deadline: float | None = None):
    return GenerationRequest(
        prompt_tokens=[1] * prompt,
        max_tokens=max_tokens,
        share=Share(flow, weight),
        deadline=deadline,
        timeout_s=30.0 if deadline else None,
    )


def busy(*steps_left: int) -> list:
    """Stand-ins for the requests in the slots (Active), each with `steps_left` tokens to write."""
    return [SimpleNamespace(request=req("x", max_tokens=n), completion=0, feed=[], done=0) for n in steps_left]


def timed(adm: Admission, busy_left: list[float], step_s: float) -> None:
    """Enough steps of `step_s` published for admission to estimate from."""
    for _ in range(MIN_STEPS):
        adm.publish(busy(*map(int, busy_left)), step_s)


class Caller:
    """Stands in for a Generation: the queue reads only whether its caller left."""

    cancelled = False


def entry(flow: str, weight: float = 1.0, **kw) -> Waiting:
    return Waiting(req(flow, weight, **kw), [Caller()])  # type: ignore[list-item]


def test_admission_goes_to_the_flow_with_the_least_service_and_keeps_arrival_order_within_it() -> None:
    q = FairQueue(slots=8, queue_size=64)
    a = [entry("a") for _ in range(3)]
    for e in a:
        q.push(e)
    q.take(a[0], 1)
    q.charge([(a[0].request.share, 100)])  # a has been served 100 rows
    b = entry("b")
    q.push(b)  # b comes back at the busy flows' least service: a's, as a is the only busy flow
    assert q.flows["b"].service == q.flows["a"].service
    assert q.head() is b  # a tie: the flow holding fewer slots first
    q.take(b, 1)
    assert q.head() is a[1]  # within a, arrival order


def test_weights_divide_the_service_and_idle_time_banks_no_credit() -> None:
    q = FairQueue(slots=8, queue_size=64)
    heavy, light = entry("scale", 4.0), entry("solo", 1.0)
    q.push(heavy)
    q.push(light)
    q.take(heavy, 1)
    q.take(light, 1)
    q.charge([(heavy.request.share, 400)])
    q.charge([(light.request.share, 100)])
    assert q.flows["scale"].service == q.flows["solo"].service == 100
    # solo goes idle, scale keeps working; solo comes back at scale's service, not below it
    q.ended(light.request.share)
    q.charge([(heavy.request.share, 4000)])
    q.push(entry("solo"))
    assert q.flows["solo"].service == q.flows["scale"].service


def test_a_flow_over_its_share_yields_a_slot_to_one_below_it() -> None:
    q = FairQueue(slots=8, queue_size=64)
    burst = [entry("a") for _ in range(16)]
    for e in burst:
        q.push(e)
    for e in burst[:8]:
        q.take(e, 1)
    assert q.yielding_flow() is None  # only a waits: nobody to yield to
    q.push(entry("b"))
    q.flows["b"].service = 0.0
    assert q.yielding_flow() == "a"  # b holds 0 of its 4 slots, a holds 8 of its 4
    # with plans: a on weight 8 and b on 2, b's share is 1.6 slots: it still gets one
    q.flows["a"].weight, q.flows["b"].weight = 8.0, 2.0
    assert q.yielding_flow() == "a"
    q.flows["b"].running = 1
    assert q.yielding_flow() is None  # b has its one slot


def test_a_full_queue_refuses_only_the_flow_that_fills_it() -> None:
    q = FairQueue(slots=2, queue_size=4)
    for _ in range(4):
        q.push(entry("a"))
    assert q.full_for(Share("a"))
    assert not q.full_for(Share("b"))  # b queues nothing yet: its share of the queue is free
    q.push(entry("b"))
    assert not q.full_for(Share("b"))
    q.push(entry("b"))
    assert q.full_for(Share("b"))  # b has its half (2 of 4)


def test_projected_order_interleaves_flows_by_weight() -> None:
    q = FairQueue(slots=1, queue_size=64)
    for _ in range(4):
        q.push(entry("a", 1.0))
    for _ in range(4):
        q.push(entry("b", 3.0))
    order = [e.request.share.flow for e in q.projected_order(lambda e: 10.0)]
    assert order[:4].count("b") == 3  # three of b's for each of a's


def test_the_wait_estimate_plays_the_queue_forward() -> None:
    est = WaitEstimate(prefill_chunk=512)
    assert est.starts_s([10, 20], 0, [5]) is None  # nothing measured yet
    for _ in range(MIN_STEPS - 1):
        est.observe_step(0.1)
    assert est.starts_s([10, 20], 0, [5]) is None  # too few steps timed to estimate from
    est.observe_step(0.1)
    # two busy slots free after 10 and 20 steps; the first queued takes the first, the second the next
    assert est.starts_s([10, 20], 0, [30, 30, 30]) == pytest.approx([1.0, 2.0, 4.0])
    assert est.starts_s([], 2, [30]) == [0.0]
    # answers seen ending sooner make the expected length shorter, never below what is generated
    r = req("a", max_tokens=128, prompt=4)
    assert est.expected_steps(r) == 1 + 128
    est.observe_answer(20)
    assert est.expected_steps(r) == 1 + 20
    assert est.expected_steps(r, generated=50, prompt_left=0) == 1


def test_a_newcomer_that_cannot_start_in_time_is_refused_at_once_with_a_retry_after() -> None:
    adm = Admission(slots=2, queue_size=64, prefill_chunk=512)
    timed(adm, [100.0, 100.0], 0.1)  # both slots busy for 10 s
    soon = time.monotonic() + 30
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # starts in ~10 s
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # ~10 s
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # ~20 s
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # ~20 s
    with pytest.raises(Overloaded) as refused:
        adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # ~30 s: past its limit
    assert refused.value.status == 503 and int(refused.value.headers["Retry-After"]) >= 1
    # another tenant's request goes ahead of a's backlog: it is admitted
    adm.submit(req("b", max_tokens=100, deadline=soon), [Caller()])


def test_queued_requests_whose_start_slipped_past_their_deadline_are_refused_early() -> None:
    adm = Admission(slots=1, queue_size=64, prefill_chunk=512)
    soon = time.monotonic() + 30
    for _ in range(5):  # nothing measured: all queued
        adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])
    timed(adm, [100.0], 0.1)  # steps measured: each request takes 10 s
    ends = adm.sweep(time.monotonic())
    reasons = [end.finish_reason for _, end in ends]
    assert reasons == ["overloaded"] * 3  # the 3rd to 5th would start at 30, 40 and 50 s
    assert all(end.retry_after_s >= 1 for _, end in ends)
    assert len(adm.queue) == 2


def test_a_flow_that_had_the_hive_to_itself_carries_no_debt_against_one_that_came_after() -> None:
    q = FairQueue(slots=8, queue_size=64)
    b = entry("b")
    q.push(b)
    q.take(b, 1)
    q.charge([(b.request.share, 1000)])  # b alone, served a lot
    q.ended(b.request.share)  # b idle (its record kept: the only flow)
    a = entry("a")
    q.push(a)  # a starts at the hive's virtual time, not at 0
    assert q.flows["a"].service == 1000
    q.take(a, 1)
    q.charge([(a.request.share, 50)])
    b2 = entry("b")
    q.push(b2)
    assert q.head() is b2  # b comes back level with a (a holds a slot, b none): b first


def test_a_full_queue_says_when_a_slot_frees() -> None:
    adm = Admission(slots=1, queue_size=1, prefill_chunk=512)
    timed(adm, [100.0], 0.1)  # the one slot frees in about 10 s
    adm.submit(req("a", max_tokens=100), [Caller()])
    with pytest.raises(Overloaded) as refused:
        adm.submit(req("a", max_tokens=100), [Caller()])
    assert int(refused.value.headers["Retry-After"]) == 10


def test_an_admitted_request_is_not_refused_for_an_estimate_that_drifts_less_than_the_margin() -> None:
    adm = Admission(slots=1, queue_size=64, prefill_chunk=512)
    timed(adm, [100.0], 0.1)  # the slot frees in 10 s
    soon = time.monotonic() + 25
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # starts at 10 s (12 stretched)
    adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # 20 s: 24 stretched, admitted
    with pytest.raises(Overloaded):
        adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])  # 30 s
    for _ in range(4):
        adm.publish(busy(100), 0.115)  # steps turn out about 10% slower: the 2nd starts at ~22 s
    assert adm.sweep(time.monotonic() + 1) == [] and len(adm.queue) == 2
    for _ in range(60):
        adm.publish(busy(100), 0.15)  # 50% slower: the 2nd would start at ~30 s, past its deadline
    ends = adm.sweep(time.monotonic() + 2)
    assert [end.finish_reason for _, end in ends] == ["overloaded"] and len(adm.queue) == 1


def test_requests_that_arrive_before_any_step_is_timed_are_judged_as_soon_as_one_is() -> None:
    adm = Admission(slots=2, queue_size=4, prefill_chunk=512)
    soon = time.monotonic() + 30
    refused = 0
    for _ in range(10):  # a burst before anything ran: the queue holds its size plus the free slots
        try:
            adm.submit(req("a", max_tokens=100, deadline=soon), [Caller()])
        except Overloaded:
            refused += 1
    assert refused == 4 and len(adm.queue) == 6
    now = time.monotonic()
    assert adm.sweep(now) == []  # nothing timed: nobody is judged
    adm.publish(busy(100, 100), 0.1)
    assert adm.sweep(now + 0.01) == []  # one step is too few
    adm.publish(busy(100, 100), 0.1)
    # timed: judged at once (not a sweep period later), each as a newcomer, stretched: the two that
    # start at ~20 s (24 stretched) stay, those at ~30 s would not make it
    ends = adm.sweep(now + 0.02)
    assert [end.finish_reason for _, end in ends] == ["overloaded"] * 2
