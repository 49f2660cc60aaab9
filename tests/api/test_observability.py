"""Per-tenant metrics and traces from a live server on the real model: /metrics by account and
specialist (tokens as the answers counted them, the waits the engine stamped, each busy flow's
fair-share deficit), and the request spans the server ships by OTLP/HTTP to a receiver in this
process, decoded with OpenTelemetry's own protobuf types. The receiver stands in for an OpenTelemetry
Collector: the only Collector binary on the package registries the project installs from is an
unofficial wheel of unclear origin, which the project does not take on."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from live import LiveServer, start_server
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client.parser import text_string_to_metric_families

from appliance.serving.flow import TEST_KEY_SHARE
from appliance.store.migrations import DEFAULT_SHARE_WEIGHTS

SECRET = "the secret name of the owl is Hesper"
STEPS = {"auth", "prepare", "admission", "prefill", "decode", "metering"}


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on loopback: POST /v1/traces with a protobuf body, as a collector
    takes it; keeps the raw bodies and the spans with their resource's attributes."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.spans: list[tuple[dict, Span]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                if ok:
                    receiver.take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.bodies.append(body)
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                self.spans.extend((resource, span) for ss in rs.scope_spans for span in ss.spans)

    def request_span(self, request_id: str, timeout: float = 20.0) -> tuple[dict, Span]:
        """The root span of the request with this id, once it has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for resource, span in self.spans:
                    if not span.parent_span_id and attributes(span.attributes).get("alveare.request_id") == request_id:
                        return resource, span
            time.sleep(0.1)
        raise AssertionError(f"no span for {request_id} arrived; got {[s.name for _, s in self.spans]}")

    def children(self, root: Span) -> dict[str, Span]:
        with self._lock:
            return {s.name: s for _, s in self.spans if s.parent_span_id == root.span_id}


def attributes(kvs: list[KeyValue]) -> dict:
    out: dict = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        value = getattr(kv.value, which)
        out[kv.key] = [v.string_value for v in value.values] if which == "array_value" else value
    return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.httpd.shutdown()


def serve(data: Path, receiver: OtlpReceiver, *flags: str) -> LiveServer:
    # The original embedded model (no optimised copy to make first: what is observed does not depend
    # on it), spans sent every 200 ms rather than every 5 s.
    return start_server(
        data,
        "--optimized-model",
        "off",
        "--otlp-endpoint",
        receiver.url,
        *flags,
        env={"OTEL_BSP_SCHEDULE_DELAY": "200"},
    )


@pytest.fixture(scope="module")
def traced_server(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[LiveServer]:
    server = serve(tmp_path_factory.mktemp("alveare-traced"), receiver)
    try:
        yield server
    finally:
        server.stop()


def chat(server: LiveServer, key: str, body: dict, request_id: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": request_id}
    return httpx.post(server.base_url + "/chat/completions", json=body, headers=headers, timeout=120)


def metrics(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_metrics_and_spans_name_the_account_specialist_tokens_and_stages(
    traced_server: LiveServer, receiver: OtlpReceiver
) -> None:
    a = traced_server.new_key("obs-a", plan="scale")
    b = traced_server.new_key("obs-b", plan="solo")  # classify, summarise and extract only
    ask = [{"role": "user", "content": f"Remember this: {SECRET}. Now say hello."}]
    plain = chat(traced_server, a, {"model": "chat", "messages": ask, "max_tokens": 8}, "req-obs-plain")
    streamed = {
        "model": "summarise",
        "messages": ask,
        "max_tokens": 24,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    stream = chat(traced_server, b, streamed, "req-obs-stream")
    refused = chat(traced_server, b, {"model": "code", "messages": ask}, "req-obs-refused")
    assert plain.status_code == stream.status_code == 200 and refused.status_code == 403, refused.text
    plain_usage = plain.json()["usage"]
    stream_usage = next(line for line in stream.text.splitlines() if '"usage":{' in line)
    b_completion = int(stream_usage.split('"completion_tokens":')[1].split(",")[0])
    assert b_completion == 24  # ignore_eos: to max_tokens

    m = metrics(traced_server)
    a_chat, b_sum = labels(account="obs-a", specialist="chat"), labels(account="obs-b", specialist="summarise")
    assert m[("alveare_account_requests_total", labels(account="obs-a", specialist="chat", status="200"))] == 1
    assert m[("alveare_account_requests_total", labels(account="obs-b", specialist="summarise", status="200"))] == 1
    assert m[("alveare_account_requests_total", labels(account="obs-b", specialist="", status="403"))] == 1
    assert m[("alveare_account_prompt_tokens_total", a_chat)] == plain_usage["prompt_tokens"]
    assert m[("alveare_account_completion_tokens_total", a_chat)] == plain_usage["completion_tokens"]
    assert m[("alveare_account_completion_tokens_total", b_sum)] == 24
    for which in (a_chat, b_sum):
        assert m[("alveare_account_queue_wait_seconds_count", which)] == 1
        assert m[("alveare_account_time_to_first_token_seconds_count", which)] == 1
        assert 0 < m[("alveare_account_time_to_first_token_seconds_sum", which)] < 60
    # 23 tokens after the first, decoded by the real model in measurable time.
    assert m[("alveare_account_decode_tokens_per_second_count", b_sum)] == 1
    assert m[("alveare_account_decode_tokens_per_second_sum", b_sum)] > 1

    resource, root = receiver.request_span("req-obs-plain")
    assert resource["service.name"] == "alveare" and root.name == "POST /v1/chat/completions"
    assert root.kind == Span.SpanKind.SPAN_KIND_SERVER
    got = attributes(root.attributes)
    assert (got["alveare.account"], got["alveare.specialist"], got["http.response.status_code"]) == (
        "obs-a",
        "chat",
        200,
    )
    assert got["gen_ai.usage.input_tokens"] == plain_usage["prompt_tokens"]
    assert got["gen_ai.usage.output_tokens"] == plain_usage["completion_tokens"]
    children = receiver.children(root)
    assert set(children) == STEPS
    # The engine's stages, in order, inside the request's span.
    admission, prefill, decode = children["admission"], children["prefill"], children["decode"]
    assert root.start_time_unix_nano <= admission.start_time_unix_nano
    assert admission.end_time_unix_nano <= prefill.start_time_unix_nano + 1000  # the clocks' conversion
    assert prefill.end_time_unix_nano <= decode.start_time_unix_nano + 1000
    assert decode.end_time_unix_nano <= root.end_time_unix_nano
    assert prefill.end_time_unix_nano > prefill.start_time_unix_nano  # the real model's prefill takes time

    _, root = receiver.request_span("req-obs-stream")
    decode = receiver.children(root)["decode"]
    assert attributes(decode.attributes)["gen_ai.usage.output_tokens"] == 24
    assert attributes(decode.attributes)["alveare.tokens_per_second"] > 1
    _, root = receiver.request_span("req-obs-refused")
    got = attributes(root.attributes)
    assert got["http.response.status_code"] == 403 and got["alveare.account"] == "obs-b"
    assert root.status.code == Status.StatusCode.STATUS_CODE_UNSET
    # Nothing of the prompt's text left the server.
    assert all(SECRET.encode() not in body and b"Hesper" not in body for body in receiver.bodies)


def test_each_busy_flows_fair_share_deficit(traced_server: LiveServer) -> None:
    """Three of one account's streams on the 8 slots: its flow, alone, is 5 slots short of its share;
    beside another account's test key streaming too, each is short of (or over) its plan-weighted share."""
    a = traced_server.new_key("obs-flood", plan="scale")
    b_test = traced_server.new_key("obs-sandbox", plan="starter", test=True)
    long = {"model": "chat", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 400}
    long |= {"ignore_eos": True, "stream": True}

    def deficits() -> dict[tuple[str, str], float]:
        name = "alveare_fair_share_deficit_slots"
        return {(dict(k)["account"], dict(k)["keys"]): v for (n, k), v in metrics(traced_server).items() if n == name}

    # Each stream's event iterator is kept: dropping one closes its response, which cancels its request.
    held: list[Iterator[str]] = []
    with httpx.Client(base_url=traced_server.base_url, timeout=120) as client, contextlib.ExitStack() as streams:

        def generating(key: str) -> None:
            response = streams.enter_context(
                client.stream("POST", "/chat/completions", json=long, headers={"Authorization": f"Bearer {key}"})
            )
            assert response.status_code == 200
            events = (line for line in response.iter_lines() if line.startswith("data: "))
            next(events)  # the role: sent as the request is queued
            next(events)  # a token: it holds a slot
            held.append(events)

        for _ in range(3):
            generating(a)
        assert deficits() == {("obs-flood", "live"): 5.0}
        generating(b_test)
        both = deficits()
        assert set(both) == {("obs-flood", "live"), ("obs-sandbox", "test")}
        # Shares by plan weight, a test key's at a fraction of its account's: the sandbox's one slot is over its own.
        flood, sandbox = DEFAULT_SHARE_WEIGHTS["scale"], DEFAULT_SHARE_WEIGHTS["starter"] * TEST_KEY_SHARE
        assert both[("obs-flood", "live")] == pytest.approx(8 * flood / (flood + sandbox) - 3)
        assert both[("obs-sandbox", "test")] == pytest.approx(8 * sandbox / (flood + sandbox) - 1)
        assert both[("obs-sandbox", "test")] < 0
    # The streams closed: their flows are idle, and no series is left for them.
    deadline = time.monotonic() + 10
    while deficits() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert deficits() == {}


def test_the_prompt_goes_in_a_trace_only_with_trace_prompts(tmp_path: Path, receiver: OtlpReceiver) -> None:
    server = serve(tmp_path / "data", receiver, "--trace-prompts")
    try:
        key = server.new_key("obs-prompts")
        ask = {"model": "chat", "messages": [{"role": "user", "content": SECRET}], "max_tokens": 2}
        assert chat(server, key, ask, "req-obs-prompt").status_code == 200
        _, root = receiver.request_span("req-obs-prompt")
    finally:
        server.stop()
    [prompt] = attributes(root.attributes)["alveare.prompt"]
    # As the model reads it: the chat template's markers around the specialist's prompt and the message.
    assert SECRET in prompt and prompt.count("<|im_start|>") >= 3
    assert "tracing: request spans go to " + receiver.url + "/v1/traces" in server.log_text()
    assert "prompts included (--trace-prompts)" in server.log_text()
