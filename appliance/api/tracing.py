"""Request traces over OpenTelemetry (the `otel` extra), off unless an OTLP endpoint is set: one span
per API request, with children for its steps and stages (serving/tracing.py, serving/otel.py).

The provider is the app's own, never OpenTelemetry's global one, and its spans leave in a batch from
the SDK's own thread: nothing waits on the collector on the event loop. A trace carries names,
counts and times; the prompt's text only under --trace-prompts; an exception's message never (it
may quote what a client sent).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance import __version__
from appliance.api.errors import TRACE, request_id
from appliance.core.errors import AlveareError
from appliance.core.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("alveare.api")

# Not traced: probes, scrapes and static pages, which would bury the API's requests.
UNTRACED = ("/health", "/metrics", "/schema", "/sdk/")
# OpenTelemetry's own variables for where spans go; either turns tracing on, as it does for its SDK.
OTEL_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACES_PATH = "/v1/traces"
PROPAGATED = (b"traceparent", b"tracestate")


def traces_url(endpoint: str) -> str:
    """--otlp-endpoint as the exporter takes it: a collector's base URL gets OTLP/HTTP's traces path."""
    base = endpoint.rstrip("/")
    if base.count("/") > 2:  # a path of its own after scheme://host
        return endpoint
    return base + TRACES_PATH


def tracer_provider(settings: Settings, environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """The provider exporting this server's spans, or None where tracing is off: no endpoint, the SDK
    switched off (OTEL_SDK_DISABLED), or the extra not installed (then one line says so)."""
    environ = os.environ if environ is None else environ
    named = next((var for var in OTEL_ENDPOINTS if environ.get(var)), None)
    if not settings.otlp_endpoint and named is None:
        return None
    asked = "--otlp-endpoint" if settings.otlp_endpoint else named
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        log.warning("tracing is off: %s is set, but so is OTEL_SDK_DISABLED=true", asked)
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing is off: %s asks for traces, but OpenTelemetry is not installed here "
            "(pip install 'alveare[otel]' adds it)",
            asked,
        )
        return None
    url = traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else None
    service = settings.otel_service_name or environ.get("OTEL_SERVICE_NAME") or "alveare"
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": __version__}))
    # Given no URL, the exporter reads OpenTelemetry's variables itself (headers, certificates too).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    log.info(
        "tracing: request spans go to %s by OTLP/HTTP, as service %r%s",
        url or f"{named}={environ[named]}",
        service,
        ", prompts included (--trace-prompts)" if settings.trace_prompts else "",
    )
    return provider


async def shut_down(provider: TracerProvider) -> None:
    """Send the spans still batched, off the event loop (the SDK waits on the collector)."""
    await asyncio.to_thread(provider.shutdown)


def traced(provider: TracerProvider, *, include_prompt: bool) -> Callable[[ASGIApp], ASGIApp]:
    """App middleware: a server span around each API request, its response streamed to the end
    included, named by method and route, with its request id, client and HTTP status; in the caller's
    trace where its request says which (W3C trace context)."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from appliance.serving.otel import SpanTrace

    tracer = provider.get_tracer("alveare", __version__)
    # A caller's W3C `traceparent` makes the request's span a child of the caller's own.
    propagator = TraceContextTextMapPropagator()

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith(UNTRACED):
                await app(scope, receive, send)
                return
            method = scope["method"]
            route = scope.get("path_template") or scope["path"]
            client = scope.get("client")
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in PROPAGATED}
            span = tracer.start_span(
                f"{method} {route}",
                context=propagator.extract(carrier) if carrier else None,
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "http.route": route,
                    "alveare.request_id": request_id(scope),
                    "client.address": client[0] if client else "",
                },
            )
            scope.setdefault("state", {})[TRACE] = SpanTrace(tracer, span, include_prompt=include_prompt)
            status = 0

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                    await app(scope, receive, sending)
            except BaseException as exc:
                # Raised past this middleware (auth's refusals): the status its handler will answer with.
                status = status or _status_of(exc)
                if isinstance(exc, AlveareError) and exc.code:
                    span.set_attribute("alveare.error_code", exc.code)
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                span.end()

        return handle

    return middleware


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, AlveareError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return 499  # the client went away
    return getattr(exc, "status_code", 500)
