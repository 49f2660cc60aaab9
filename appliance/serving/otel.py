"""SpanTrace: a request's trace on an OpenTelemetry span. Imported only when tracing is on (the `otel`
extra installed and an endpoint set): nothing else in serving imports OpenTelemetry.

The engine's stamps are time.monotonic(); spans take wall-clock nanoseconds, so each stage is moved
by the clocks' difference when it is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode, Tracer

from appliance.serving.stages import Stages
from appliance.serving.tracing import Attribute, Trace


class SpanTrace(Trace):
    def __init__(self, tracer: Tracer, span: Span, *, include_prompt: bool = False) -> None:
        self.tracer = tracer
        self.span = span
        self.wants_prompt = include_prompt
        # Children name this span as their parent, whatever the context they are made in.
        self._parent = trace.set_span_in_context(span)

    def set(self, attributes: Mapping[str, Attribute]) -> None:
        if self.span.is_recording():  # an error answered after the span ended (auth's) is in it already
            self.span.set_attributes(attributes)

    @contextmanager
    def step(self, name: str) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            name, context=self._parent, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(StatusCode.ERROR, type(exc).__name__)  # its class, never its message
                raise

    def stages(self, stages: Stages, completion_tokens: int) -> None:
        if stages.submitted is None:
            return  # never reached the engine
        offset = time.time_ns() - time.monotonic_ns()

        def span(name: str, start: float, end: float, attributes: Mapping[str, Attribute]) -> None:
            child = self.tracer.start_span(
                name, context=self._parent, start_time=int(start * 1e9) + offset, attributes=attributes
            )
            child.end(end_time=int(end * 1e9) + offset)

        admitted = stages.started is not None
        end = stages.started if stages.started is not None else stages.finished
        if end is not None:
            span("admission", stages.submitted, end, {"alveare.admitted": admitted})
        if stages.started is not None and stages.first_token is not None:
            span("prefill", stages.started, stages.first_token, {})
        if stages.first_token is not None and stages.finished is not None:
            decode: dict[str, Attribute] = {
                "gen_ai.usage.output_tokens": completion_tokens,
                "alveare.paused_s": stages.paused_s,
            }
            if (rate := stages.decode_rate(completion_tokens)) is not None:
                decode["alveare.tokens_per_second"] = rate
            span("decode", stages.first_token, stages.finished, decode)
