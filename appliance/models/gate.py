"""The quality gate (pure): whether a copy is as good as the original and faster on this machine."""

from __future__ import annotations

import math
from collections.abc import Sequence

from appliance.engine.tuning.solo_lane import SOLO_ONE_ROW_FLOOR
from appliance.models.report import Gate, Result, Speed


def gate_for(solo_lane: bool) -> Gate:
    """The gate a copy is kept by, with or without the solo lane taking lone requests off it."""
    return Gate(one_row_floor=SOLO_ONE_ROW_FLOOR) if solo_lane else Gate()


SPEED_NAMES = {"prefill": "prefill", "decode_batch": "8-row decode", "decode_one": "1-row decode"}


def speed_ratios(original: Speed, copy: Speed) -> dict[str, float]:
    return {
        name: round(getattr(copy, name) / getattr(original, name), 3) if getattr(original, name) > 0 else 0.0
        for name in ("prefill", "decode_batch", "decode_one")
    }


def geometric_mean(values: Sequence[float]) -> float:
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def judge(
    *,
    original_perplexity: float,
    perplexity: float,
    agreement: float,
    ratios: dict[str, float],
    gate: Gate,
) -> tuple[bool, bool, float, list[str]]:
    """(passed the quality gate, faster, speed-up, reasons it is not kept)."""
    reasons = []
    increase = perplexity / original_perplexity - 1
    if not math.isfinite(perplexity) or increase > gate.max_perplexity_increase:
        reasons.append(f"perplexity {increase:+.1%} (at most {gate.max_perplexity_increase:+.0%})")
    if agreement < gate.min_agreement:
        reasons.append(f"greedy agreement {agreement:.0%} (at least {gate.min_agreement:.0%})")
    speedup = geometric_mean(list(ratios.values()))
    floors = {name: gate.min_each for name in ratios}
    if gate.one_row_floor is not None and "decode_one" in floors:
        floors["decode_one"] = gate.one_row_floor
    slower = {name: r for name, r in ratios.items() if r < floors[name]}
    faster = speedup >= gate.min_speedup and not slower
    if speedup < gate.min_speedup:
        reasons.append(f"speed {speedup:.2f}x the original's (at least {gate.min_speedup:.2f}x)")
    for name, r in slower.items():
        reasons.append(f"{SPEED_NAMES[name]} {r:.2f}x the original's (at least {floors[name]:.2f}x)")
    return not any("perplexity" in r or "agreement" in r for r in reasons), faster, speedup, reasons


def choose(candidates: Sequence[Result]) -> Result | None:
    """The fastest candidate that passed the gate and beats the original."""
    good = [c for c in candidates if c.passed and c.faster]
    return max(good, key=lambda c: c.speedup or 0.0) if good else None


def verdict(kept: Result | None, candidates: Sequence[Result]) -> str:
    if kept is not None:
        return (
            f"kept the {kept.type} copy: perplexity {kept.perplexity_increase:+.1%}, greedy agreement "
            f"{kept.agreement:.0%}, {kept.speedup:.2f}x the original's speed on this machine"
        )
    if not candidates:
        return "nothing to try: the model already has the type asked for"
    why = "; ".join(f"{c.type}: {', '.join(c.reasons)}" for c in candidates)
    return f"kept no copy ({why}); serve keeps loading the original"
