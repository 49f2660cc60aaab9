"""What the scheduler counts: served requests, prefix-cache hits, drafts, recent token rates, and a
profile of where its thread's time goes."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

# Seconds of history kept for tokens/s.
RATE_WINDOW = 60.0


@dataclass
class Profile:
    """Where the scheduler thread's time goes (seconds since start), logged when the engine stops."""

    steps: int = 0
    generated: int = 0
    prompt: int = 0
    busy_s: float = 0.0  # admitting, stepping and handing out tokens
    decode_s: float = 0.0  # inside llama_decode
    sample_s: float = 0.0  # sampler chains, detokenising, stop strings
    restores: int = 0
    restore_s: float = 0.0
    saves: int = 0
    save_s: float = 0.0
    # Steps that decode only new tokens, no prompt, by batch size:
    # [count, seconds in llama_decode, seconds for the whole step (admit, batch, decode, sample, hand out)].
    by_size: dict[int, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.steps:
            return "no steps"
        other = self.busy_s - self.decode_s - self.sample_s - self.restore_s - self.save_s

        def share(x: float) -> str:
            return f"{x:.2f} s ({100 * x / self.busy_s:.1f}%)" if self.busy_s else f"{x:.2f} s"

        return (
            f"{self.steps} steps, {self.generated} generated + {self.prompt} prompt tokens "
            f"({(self.generated + self.prompt) / self.steps:.1f} per step), {self.busy_s:.2f} s busy: "
            f"decode {share(self.decode_s)}, sampling {share(self.sample_s)}, "
            f"{self.restores} prefix restores {share(self.restore_s)}, {self.saves} prefix saves {share(self.save_s)}, "
            f"other {share(other)}; decode-only steps by batch size (llama_decode + the host's Python around it): "
            + ", ".join(
                f"{n}: {int(c)} x {1000 * t / c:.2f} + {1000 * (w - t) / c:.2f} ms"
                for n, (c, t, w) in sorted(self.by_size.items())
            )
        )


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    served: int = 0
    lookups: int = 0
    hits: int = 0
    reused_tokens: int = 0
    drafted: int = 0
    draft_accepted: int = 0
    # Requests that gave their slot up to another flow for a while (fairness.py).
    paused: int = 0
    profile: Profile = field(default_factory=Profile)
    steps: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, generated, prompt)
    # The scheduler thread appends steps while the event loop reads rates for /v1/hive/status and
    # /metrics: iterating a deque another thread mutates raises, so both sides hold this lock.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_step(self, generated: int, prompt: int) -> None:
        now = time.monotonic()
        with self.lock:
            self.steps.append((now, generated, prompt))
            while self.steps and self.steps[0][0] < now - RATE_WINDOW:
                self.steps.popleft()

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        with self.lock:
            recent = [s for s in self.steps if s[0] >= now - RATE_WINDOW]
        if not recent:
            return 0.0, 0.0
        span = max(now - recent[0][0], 1.0)
        return sum(s[1] for s in recent) / span, sum(s[2] for s in recent) / span
