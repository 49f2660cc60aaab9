"""Request traces in-process (fake engine), caught by OpenTelemetry's in-memory exporter: one server
span per API request with its steps and stages as children, who and what as attributes, and the
prompt's text only when asked for. tests/api/test_observability.py has a live server ship them to
an OTLP receiver."""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from appliance.api import create_app
from appliance.api.tracing import tracer_provider, traces_url
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

SECRET = "the secret name of the owl"
CHAT = {"model": "summarise", "messages": [{"role": "user", "content": f"Summarise: {SECRET}."}]}
STEPS = {"auth", "prepare", "admission", "prefill", "decode", "metering"}


class Traced:
    def __init__(self, client: TestClient, exporter: InMemorySpanExporter, key: str) -> None:
        self.client, self.exporter, self.key = client, exporter, key

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.parent is None]

    def children(self, root: ReadableSpan) -> dict[str, ReadableSpan]:
        return {s.name: s for s in self.spans() if s.parent is not None and s.parent.span_id == root.context.span_id}


@pytest.fixture(params=[False, True], ids=["no-prompts", "trace-prompts"])
def traced(request, tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = Store(tmp_path)
    store.ensure_admin()
    store.create_account("acme", "solo")
    key = store.create_key("acme").key
    settings = Settings(data_dir=str(tmp_path), trace_prompts=request.param)
    app = create_app(
        settings, engine=FakeEngine(), store=store, specialists=load_specialists(), tracer_provider=provider
    )
    with TestClient(app) as client:
        yield Traced(client, exporter, key)
    store.close()
    provider.shutdown()


def everything_said(spans: list[ReadableSpan]) -> str:
    """Every attribute and event of these spans, as text."""
    said = [str(dict(s.attributes or {})) for s in spans]
    said += [f"{e.name} {dict(e.attributes or {})}" for s in spans for e in s.events]
    return " ".join(said + [s.status.description or "" for s in spans])


def test_one_span_per_request_with_its_steps_stages_and_who(traced: Traced) -> None:
    user = {"Authorization": f"Bearer {traced.key}"}
    plain = traced.client.post("/v1/chat/completions", json=CHAT, headers={**user, "X-Request-Id": "req-owl-1"})
    stream = traced.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=user)
    assert plain.status_code == stream.status_code == 200
    roots = traced.roots()
    assert [r.name for r in roots] == ["POST /v1/chat/completions"] * 2
    usage = plain.json()["usage"]
    for root, response in zip(roots, (plain, stream), strict=True):
        a = dict(root.attributes or {})
        assert root.kind == SpanKind.SERVER and a["http.response.status_code"] == 200
        assert a["alveare.request_id"] == response.headers["x-request-id"]
        assert (a["alveare.account"], a["alveare.test_key"], a["alveare.specialist"]) == ("acme", False, "summarise")
        assert a["alveare.endpoint"] == "chat.completions"
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        children = traced.children(root)
        assert set(children) == STEPS
        assert all(c.context.trace_id == root.context.trace_id for c in children.values())
        # In order, inside the request's own span (the stream's span ends after its last event).
        order = [children[n] for n in ("auth", "prepare", "admission", "prefill", "decode", "metering")]
        assert root.start_time <= order[0].start_time and order[-1].end_time <= root.end_time
        assert all(x.end_time <= y.start_time for x, y in itertools.pairwise(order[2:]))
        assert children["admission"].attributes["alveare.admitted"] is True
        assert children["decode"].attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert roots[0].attributes["alveare.request_id"] == "req-owl-1"


def test_the_prompt_is_in_a_trace_only_when_asked_for(traced: Traced) -> None:
    traced.client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {traced.key}"})
    [root] = traced.roots()
    prompts = root.attributes.get("alveare.prompt") if root.attributes else None
    if traced.client.app.state.settings.trace_prompts:
        # As the model reads it: the specialist's system prompt and the template's markers around the text.
        assert prompts is not None and len(prompts) == 1 and SECRET in prompts[0] and "<system>" in prompts[0]
    else:
        assert prompts is None and SECRET not in everything_said(traced.spans())


def test_a_callers_trace_context_makes_the_request_its_child(traced: Traced) -> None:
    trace_id, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"Authorization": f"Bearer {traced.key}", "traceparent": f"00-{trace_id}-{caller}-01"}
    assert traced.client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    [root] = [s for s in traced.spans() if s.kind == SpanKind.SERVER]
    assert f"{root.context.trace_id:032x}" == trace_id and root.parent is not None and root.parent.is_remote
    assert f"{root.parent.span_id:016x}" == caller
    assert set(traced.children(root)) == STEPS


def test_an_error_answer_names_its_code(traced: Traced) -> None:
    user = {"Authorization": f"Bearer {traced.key}"}
    # Not among the solo plan's specialists: refused as the request is prepared.
    r = traced.client.post("/v1/chat/completions", json={**CHAT, "model": "code"}, headers=user)
    assert r.status_code == 403
    [root] = traced.roots()
    a = dict(root.attributes or {})
    assert (a["http.response.status_code"], a["alveare.error_code"]) == (403, r.json()["error"]["code"])
    assert (a["alveare.account"], a["alveare.specialist"], a["gen_ai.usage.output_tokens"]) == ("acme", "", 0)
    assert traced.children(root)["prepare"].status.status_code == StatusCode.ERROR
    assert {"admission", "prefill", "decode"}.isdisjoint(traced.children(root))


def test_a_generation_cut_by_its_timeout_shows_what_it_generated(traced: Traced) -> None:
    traced.client.app.state.serving.runner.engine.outcome = "timeout"  # after its first token
    r = traced.client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {traced.key}"})
    assert r.status_code == 504
    [root] = traced.roots()
    assert (root.attributes["alveare.error_code"], root.attributes["gen_ai.usage.output_tokens"]) == ("timeout", 0)
    # Metered as nothing, but its decode span counts the words the fake engine gave before the cut.
    assert traced.children(root)["decode"].attributes["gen_ai.usage.output_tokens"] == 2


def test_a_refused_key_names_no_account_and_probes_are_not_traced(traced: Traced, caplog) -> None:
    wrong = {"Authorization": "Bearer alv_live_" + "x" * 40}
    assert traced.client.post("/v1/chat/completions", json=CHAT, headers=wrong).status_code == 401
    assert traced.client.get("/health").status_code == 200
    [root] = traced.roots()
    a = dict(root.attributes or {})
    assert a["http.response.status_code"] == 401 and a["alveare.error_code"] == "invalid_api_key"
    assert not [k for k in a if k.startswith(("alveare.account", "alveare.specialist", "gen_ai."))]
    assert "alveare.request_id" in a
    auth = traced.children(root)
    assert set(auth) == {"auth"} and auth["auth"].status.status_code == StatusCode.ERROR
    # The refusal's message (which quotes the key, masked) is not recorded.
    assert "alv_live_" not in everything_said(traced.spans())
    assert "ended span" not in caplog.text


def test_the_provider_follows_the_settings_and_opentelemetrys_own_variables(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="alveare.api")
    settings = Settings(data_dir=str(tmp_path))
    assert tracer_provider(settings, environ={}) is None
    assert (
        traces_url("http://collector:4318")
        == traces_url("http://collector:4318/")
        == ("http://collector:4318/v1/traces")
    )
    assert traces_url("https://gateway/otlp/v1/traces") == "https://gateway/otlp/v1/traces"
    for asked, environ in [
        (Settings(data_dir=str(tmp_path), otlp_endpoint="http://127.0.0.1:4318"), {}),
        (settings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "box-2"}),
    ]:
        provider = tracer_provider(asked, environ=environ)
        assert provider is not None
        assert provider.resource.attributes["service.name"] == environ.get("OTEL_SERVICE_NAME", "alveare")
        provider.shutdown()
    assert "http://127.0.0.1:4318/v1/traces by OTLP/HTTP, as service 'alveare'" in caplog.text
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracer_provider(settings, environ=disabled) is None


def test_asking_for_traces_without_the_extra_is_one_line(tmp_path, caplog, monkeypatch) -> None:
    # As if `alveare[otel]` were not installed: its modules cannot be imported.
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        monkeypatch.setitem(sys.modules, module, None)
    settings = Settings(data_dir=str(tmp_path), otlp_endpoint="http://127.0.0.1:4318")
    assert tracer_provider(settings, environ={}) is None
    [line] = [r for r in caplog.records if r.name == "alveare.api"]
    assert line.levelno == logging.WARNING and "--otlp-endpoint" in line.message
    assert "OpenTelemetry is not installed" in line.message and "pip install 'alveare[otel]'" in line.message
    # And the app serves without it.
    store = Store(tmp_path)
    store.ensure_admin()
    app = create_app(settings, engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
    store.close()
