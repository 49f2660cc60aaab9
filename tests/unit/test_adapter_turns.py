"""Which adapter each step decodes under (engine/adapter_turns.py): fair between flows, in turns
within one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from appliance.engine.adapter_turns import AdapterTurns
from appliance.engine.adapters import BASE


def slot(adapter: int, flow: str) -> Any:
    return SimpleNamespace(
        active=SimpleNamespace(adapter=adapter, request=SimpleNamespace(share=SimpleNamespace(flow=flow)))
    )


def turns() -> AdapterTurns:
    return AdapterTurns(adapters=None)  # type: ignore[arg-type]  # choose() never touches them


def test_one_adapter_or_none_decodes_every_step() -> None:
    t = turns()
    assert t.choose([], lambda flows: {}) == BASE
    assert t.choose([slot(3, "a"), slot(3, "b"), SimpleNamespace(active=None)], lambda flows: {}) == 3


def test_the_flow_with_the_least_service_goes_first() -> None:
    order = [slot(BASE, "big"), slot(BASE, "big"), slot(2, "small")]
    service = {"big": 40.0, "small": 10.0}
    assert turns().choose(order, lambda flows: {f: service[f] for f in flows}) == 2
    service["small"] = 50.0
    assert turns().choose(order, lambda flows: {f: service[f] for f in flows}) == BASE


def test_one_flows_requests_under_two_adapters_take_turns() -> None:
    t = turns()
    order = [slot(1, "app"), slot(2, "app")]
    chosen = []
    for step in range(6):
        key = t.choose(order, lambda flows: {"app": 5.0})
        t.stepped(key, step)
        chosen.append(key)
    assert chosen in ([1, 2] * 3, [2, 1] * 3)
