"""Flash attention on split streams, timed once and remembered (engine/tuning/attention.py)."""

from __future__ import annotations

from pathlib import Path

from appliance.engine.native.kernels import VerdictCache
from appliance.engine.tuning.attention import AttentionChoice, TurnCosts, cache_path, choose_attention, decide


def test_off_only_where_it_makes_a_turn_clearly_cheaper() -> None:
    # The two CPU classes measured (docs/decisions/006-step-shape.md): on one the prompt rows on a
    # history make off much cheaper, on the other the decode steps make on cheaper.
    assert decide(TurnCosts(on=2761, off=1829)).flash == "off"
    assert decide(TurnCosts(on=1018, off=1090)).flash == "on"
    # Off costs memory: a turn a few per cent cheaper does not pay for it.
    assert decide(TurnCosts(on=1000, off=970)).flash == "on"
    assert decide(TurnCosts(on=1000, off=940)).flash == "off"
    assert "1000 ms with it on, 940 ms off" in decide(TurnCosts(on=1000, off=940)).reason


def test_the_verdict_is_timed_once_and_remembered(tmp_path: Path) -> None:
    cache = VerdictCache(cache_path(tmp_path / "cpu-kernels.json"), AttentionChoice)
    assert cache.path == tmp_path / "flash-attention.json"
    timed: list[int] = []

    def timer() -> TurnCosts:
        timed.append(1)
        return TurnCosts(on=2000, off=1000)

    first = choose_attention("k", timer, cache)
    again = choose_attention("k", timer, cache)
    assert (first.flash, first.source) == ("off", "measured")
    assert (again.flash, again.source, again.reason) == ("off", "cache", first.reason)
    assert len(timed) == 1
    choose_attention("another shape", timer, cache)
    assert len(timed) == 2


def test_an_unreadable_cache_costs_a_timing_not_a_start(tmp_path: Path) -> None:
    path = tmp_path / "flash-attention.json"
    path.write_text("{not json")
    choice = choose_attention("k", lambda: TurnCosts(on=1, off=2), VerdictCache(path, AttentionChoice))
    assert choice.flash == "on"
    assert choose_attention("k", lambda: TurnCosts(on=2, off=1), VerdictCache(path, AttentionChoice)).flash == "on"
    # without a cache dir (kernel_cache_path None) every load times it
    nowhere = VerdictCache(cache_path(None), AttentionChoice)
    assert choose_attention("k", lambda: TurnCosts(on=2, off=1), nowhere).flash == "off"


def test_a_timing_that_fails_leaves_the_choice_to_llama_cpp_and_is_not_remembered(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "flash-attention.json", AttentionChoice)

    def broken() -> TurnCosts:
        raise RuntimeError("llama.cpp could not create a context (out of memory?)")

    choice = choose_attention("k", broken, cache)
    assert choice.flash == "on" and "not timed" in choice.reason
    assert cache.get("k") is None
