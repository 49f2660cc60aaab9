"""A request's stages, from its generations' timings (the engine's stamps): the wait for a slot, the
prompt's prefill and the decode, for the per-tenant metrics and the request's trace.

A request may run several generations (n choices, or the legacy endpoint's several prompts); its
stages span them all: the first to get a slot starts the prefill, the first token ends it, and the
last to finish ends the decode.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from appliance.engine.interface import Timing


class Stages(msgspec.Struct, frozen=True, kw_only=True):
    """Times by time.monotonic(); None where the request never got that far."""

    arrived: float  # the request reached serving
    submitted: float | None = None  # handed to the engine's queue
    started: float | None = None  # its first slot
    first_token: float | None = None
    finished: float | None = None
    paused_s: float = 0.0
    # Generations that sampled a token: each one's first token is not part of the decode rate.
    decoding: int = 0

    @classmethod
    def of(cls, arrived: float, timings: Sequence[Timing]) -> Stages:
        def first(values: list[float | None]) -> float | None:
            return min((v for v in values if v is not None), default=None)

        return cls(
            arrived=arrived,
            submitted=first([t.submitted for t in timings]),
            started=first([t.started for t in timings]),
            first_token=first([t.first_token for t in timings]),
            finished=max((t.finished for t in timings if t.finished is not None), default=None),
            paused_s=max((t.paused_s for t in timings), default=0.0),
            decoding=sum(1 for t in timings if t.first_token is not None),
        )

    @property
    def queue_s(self) -> float | None:
        """The wait for a slot, from the engine's queue."""
        if self.submitted is None or self.started is None:
            return None
        return self.started - self.submitted

    @property
    def ttft_s(self) -> float | None:
        """From the request's arrival to its first token: what a client sees, less the network."""
        return None if self.first_token is None else self.first_token - self.arrived

    def decode_rate(self, completion_tokens: int) -> float | None:
        """Tokens per second after each generation's first, over the decode's time (pauses included)."""
        if self.first_token is None or self.finished is None:
            return None
        seconds, tokens = self.finished - self.first_token, completion_tokens - self.decoding
        return tokens / seconds if seconds > 0 and tokens > 0 else None
