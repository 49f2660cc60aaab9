"""A request's trace as serving sees it: attributes on the request's span, child spans for the steps
serving times as they run (prepare, metering), and, after the fact, the request's stages in the
engine (the wait for a slot, the prompt's prefill, the decode) from the engine's stamps.

This base records nothing, so a server without tracing pays for no span; otel.py's SpanTrace records
on an OpenTelemetry span (api/tracing.py makes one per request when tracing is on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext

from appliance.serving.stages import Stages

Attribute = str | bool | int | float | Sequence[str]


class Trace:
    # Whether the prompt's text goes in the trace (--trace-prompts): then the flow adds it.
    wants_prompt = False

    def set(self, attributes: Mapping[str, Attribute]) -> None:
        """Attributes of the request's own span."""

    def step(self, name: str) -> AbstractContextManager[object]:
        """A child span around what runs inside."""
        return nullcontext()

    def stages(self, stages: Stages, completion_tokens: int) -> None:
        """Child spans for the request's stages in the engine, as stamped."""


NO_TRACE = Trace()
