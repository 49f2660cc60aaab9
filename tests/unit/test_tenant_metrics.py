"""/metrics in-process (fake engine): per-account and per-specialist series beside the hive's own, in
the app's own registry, parsed as Prometheus reads them. The real model's values are checked on a live
server in tests/api/test_observability.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.api import create_app
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.engine.interface import Timing
from appliance.serving.stages import Stages
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

CHAT = {"model": "summarise", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def app(tmp_path):
    store = Store(tmp_path)
    admin = store.ensure_admin().key  # type: ignore[union-attr]
    store.create_account("acme", "solo")
    keys = {"live": store.create_key("acme").key, "test": store.create_key("acme", test=True).key}
    engine = FakeEngine(reply="one two three four", deficits={"acme": 1.5, "acme:test": -0.5})
    app = create_app(Settings(data_dir=str(tmp_path)), engine=engine, store=store, specialists=load_specialists())
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client, keys
    store.close()


def test_requests_tokens_and_waits_by_account_and_specialist(app) -> None:
    client, keys = app
    live = {"Authorization": f"Bearer {keys['live']}"}
    usages = [client.post("/v1/chat/completions", json=CHAT, headers=live).json()["usage"] for _ in range(2)]
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    assert client.post("/v1/chat/completions", json=streamed, headers={"Authorization": f"Bearer {keys['test']}"})
    # Not among the solo plan's specialists: refused before its specialist is resolved.
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "code"}, headers=live).status_code == 403
    assert client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer alv_live_x"}).status_code
    s = samples(client.get("/metrics").text)

    ok = (("account", "acme"), ("specialist", "summarise"))
    assert s[("alveare_account_requests_total", (*ok, ("status", "200")))] == 3  # live and test keys
    assert s[("alveare_account_requests_total", (("account", "acme"), ("specialist", ""), ("status", "403")))] == 1
    # The refused key reached no account: no series names it.
    assert {dict(labels).get("account") for (_, labels) in s if labels} - {None} == {"acme"}
    assert s[("alveare_account_prompt_tokens_total", ok)] == 3 * usages[0]["prompt_tokens"]
    assert s[("alveare_account_completion_tokens_total", ok)] == 3 * usages[0]["completion_tokens"] == 12
    for histogram in ("alveare_account_queue_wait_seconds", "alveare_account_time_to_first_token_seconds"):
        assert s[(f"{histogram}_count", ok)] == 3
        assert s[(f"{histogram}_bucket", tuple(sorted((*ok, ("le", "+Inf")))))] == 3
    # The fake engine stamps every stage at once: no decode time, so no decode rate.
    assert (("alveare_account_decode_tokens_per_second_count", ok)) not in s

    # The hive's own series keep their names beside them.
    assert s[("alveare_api_requests_total", ())] == 4 and s[("alveare_api_errors_total", (("status", "403"),))] == 1
    assert s[("alveare_up", ())] == 1 and ("alveare_requests_served_total", ()) in s
    deficit = "alveare_fair_share_deficit_slots"
    deficits = {dict(labels)["keys"]: v for (name, labels), v in s.items() if name == deficit}
    assert deficits == {"live": 1.5, "test": -0.5}


def test_each_app_counts_in_its_own_registry(app, tmp_path) -> None:
    client, keys = app
    client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {keys['live']}"})
    other_dir = tmp_path / "other"
    store = Store(other_dir)
    admin = store.ensure_admin().key  # type: ignore[union-attr]
    settings = Settings(data_dir=str(other_dir))
    other = create_app(settings, engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(other) as second:
        s = samples(second.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text)
    store.close()
    assert not [name for name, _ in s if name.startswith("alveare_account_")]
    assert s[("alveare_api_requests_total", ())] == 0


def test_stages_span_every_generation_of_a_request() -> None:
    a = Timing(10.0, started=10.5, first_token=11.0, finished=13.0, paused_s=0.25)
    b = Timing(10.0, started=10.75, first_token=11.5, finished=14.0)
    stages = Stages.of(9.5, [a, b])
    assert (stages.queue_s, stages.ttft_s, stages.finished, stages.paused_s) == (0.5, 1.5, 14.0, 0.25)
    # 2 + 40 tokens: each choice's first is the prefill's, the other 40 in the 3 s after the first token.
    assert stages.decode_rate(42) == pytest.approx(40 / 3)
    never = Stages.of(9.5, [Timing(10.0, finished=12.0)])  # refused while queued
    assert (never.queue_s, never.ttft_s, never.decode_rate(0)) == (None, None, None)
