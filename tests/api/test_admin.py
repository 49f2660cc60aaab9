"""Admin-only hive status and Prometheus metrics."""

from __future__ import annotations

import httpx
from live import LiveServer

from alveare.types import TUNING_PIECES
from appliance.engine.engine import embedded_model_path
from appliance.models.select import optimized_copy


def test_hive_status_needs_an_admin_key(server: LiveServer, api_key: str) -> None:
    r = httpx.get(server.base_url + "/hive/status", headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "admin_required"
    assert httpx.get(server.base_url + "/hive/status").status_code == 401


def test_hive_status(server: LiveServer, api_key: str) -> None:
    httpx.post(
        server.base_url + "/infer",
        json={"specialist": "qa", "prompt": "What colour is the sky?", "max_tokens": 4},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    r = httpx.get(server.base_url + "/hive/status", headers={"Authorization": f"Bearer {server.admin_key}"})
    assert r.status_code == 200, r.text
    s = r.json()
    model = s["model"]
    assert s["loaded"] and model["name"].startswith("SmolLM2") and model["device"] == "cpu"
    # The quickstart's defaults: the optimised copy where the first start kept one on this CPU (in the
    # run's shared models dir), else the embedded model itself.
    embedded = embedded_model_path()
    copy = optimized_copy(embedded, server.data_dir / "models")
    assert model["file"].endswith(".gguf") and model["name"] in model["file"]
    if copy is not None:
        assert (model["file"], model["optimized_from"]) == (copy.copy_path, embedded)
    else:
        assert (model["file"], model["optimized_from"]) == (embedded, "")
    assert s["kv"]["cells"] >= s["kv"]["context_length"] > 0 and s["cpu"]["threads"] >= 1
    # One line per machine-tuning piece, each with the same fields.
    tuning = {line["name"]: line for line in s["tuning"]}
    assert tuple(tuning) == TUNING_PIECES
    assert all(set(line) == {"name", "on", "setting", "state"} and line["state"] for line in s["tuning"])
    assert tuning["optimized_copy"]["on"] == (copy is not None) and tuning["context_size"]["on"]
    assert s["slots_total"] == 8 and 0 <= s["slots_busy"] <= 8 and s["queue_depth"] >= 0
    assert s["requests_served"] >= 1 and s["prefix_cache_lookups"] >= 1
    assert s["specialists"] == ["classify", "summarise", "extract", "qa", "chat", "code"]


def test_metrics_are_prometheus_text(server: LiveServer) -> None:
    r = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_key}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {line.split()[0] for line in r.text.splitlines() if line and not line.startswith("#")}
    assert {"alveare_up", "alveare_slots_busy", "alveare_requests_served_total", "alveare_tokens_per_second"} <= names
