"""How many prompt-lookup draft tokens to verify in a step, from what a step of each size costs.

A draft token costs a row of the batch and pays only when the model agrees with it. Where a
bigger batch is nearly free (a GPU, memory-bound) long drafts pay off; where every row costs
real compute (a small CPU) only drafts that are very likely right do. So the policy measures
what decode steps of each batch size take on this machine, keeps an acceptance rate per
request, and adds draft tokens, most likely first, only while they raise the step's expected
tokens per second.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

# Weight of the newest step in the running mean cost of a batch size.
ALPHA = 0.1
# Before a size has been measured, each extra row is assumed to cost this share of a one-token
# step: optimistic enough that drafting gets tried, after which the measured cost decides.
PRIOR_ROW = 0.5
# A request's acceptance rate starts at PRIOR_RATE, weighted as PRIOR_WEIGHT drafted tokens.
PRIOR_RATE = 0.6
PRIOR_WEIGHT = 2.0


class StepCosts:
    """Running mean seconds of a decode-only step (new tokens, no prompt) by batch size."""

    def __init__(self) -> None:
        self.mean: dict[int, float] = {}

    def observe(self, size: int, seconds: float) -> None:
        old = self.mean.get(size)
        self.mean[size] = seconds if old is None else old + ALPHA * (seconds - old)

    def cost(self, size: int) -> float:
        """Measured, interpolated between measured sizes, or extrapolated from the largest one."""
        if size in self.mean:
            return self.mean[size]
        known = sorted(self.mean)
        if not known:
            return 1.0 + PRIOR_ROW * (size - 1)  # relative units: only ratios matter
        below = [n for n in known if n < size]
        above = [n for n in known if n > size]
        if below and above:
            lo, hi = below[-1], above[0]
            return self.mean[lo] + (self.mean[hi] - self.mean[lo]) * (size - lo) / (hi - lo)
        if above:  # smaller than anything measured: scale the smallest measured size by the prior
            hi = above[0]
            return self.mean[hi] * (1.0 + PRIOR_ROW * (size - 1)) / (1.0 + PRIOR_ROW * (hi - 1))
        lo = below[-1]
        if len(below) >= 2:
            prev = below[-2]
            row = max((self.mean[lo] - self.mean[prev]) / (lo - prev), 0.0)
        else:
            row = PRIOR_ROW * self.mean[lo] / lo
        return self.mean[lo] + row * (size - lo)


class Acceptance:
    """One request's share of draft tokens the model agreed with, starting from a prior."""

    def __init__(self) -> None:
        self.drafted = 0
        self.accepted = 0

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted

    @property
    def rate(self) -> float:
        return (self.accepted + PRIOR_RATE * PRIOR_WEIGHT) / (self.drafted + PRIOR_WEIGHT)


def choose(
    costs: StepCosts, base: int, proposals: Sequence[tuple[Hashable, int, float]], room: int
) -> dict[Hashable, int]:
    """Draft tokens to verify per request, for a step that already decodes `base` tokens.

    `proposals` holds (request, tokens its lookup proposes, its acceptance rate). The j-th draft
    token of a request yields a token only if the j before it were right too: rate**j expected.
    Tokens go in most likely first while the step's expected tokens per second still rises.
    """
    candidates = sorted(((rate ** (j + 1), key) for key, n, rate in proposals for j in range(n)), key=lambda c: -c[0])
    chosen: dict[Hashable, int] = {}
    size, expected = base, float(base)
    for value, key in candidates:
        if room <= 0:
            break
        if (expected + value) * costs.cost(size) <= expected * costs.cost(size + 1):
            break
        chosen[key] = chosen.get(key, 0) + 1
        size += 1
        expected += value
        room -= 1
    return chosen
