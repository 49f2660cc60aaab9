"""The schema's answers are what the server sends: each operation that names its answer's type
(appliance/api/openapi.py's _ANSWERS) is called here, on the fake engine, and its JSON checked
against the schema it documents (the TypeScript SDK's types are generated from those schemas)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.api.openapi import _ANSWERS
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
CALLS = {
    ("get", "/health"): ("/health", None),
    ("post", "/v1/chat/completions"): ("/v1/chat/completions", CHAT),
    ("post", "/v1/completions"): ("/v1/completions", {"model": "chat", "prompt": "hi", "max_tokens": 4}),
    ("post", "/v1/responses"): ("/v1/responses", {"model": "chat", "input": "hi", "max_output_tokens": 16}),
    ("get", "/v1/models"): ("/v1/models", None),
    ("get", "/v1/models/{model_id}"): ("/v1/models/alveare-chat", None),
    ("post", "/v1/infer"): ("/v1/infer", {"specialist": "qa", "prompt": "hi", "max_tokens": 4}),
    ("get", "/v1/model/info"): ("/v1/model/info?model=chat", None),
    ("get", "/v1/usage"): ("/v1/usage", None),
    ("get", "/v1/specialists"): ("/v1/specialists", None),
    ("put", "/v1/specialists/{name}"): ("/v1/specialists/qa", {"system_prompt": "Be brief."}),
    ("delete", "/v1/specialists/{name}"): ("/v1/specialists/qa", None),
    ("get", "/v1/hive/status"): ("/v1/hive/status", None),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    store = Store(data)
    admin_key = store.ensure_admin().key  # type: ignore[union-attr]
    app = create_app(Settings(data_dir=str(data)), engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        yield client
    store.close()


def test_every_named_answer_is_called_here() -> None:
    assert set(CALLS) == set(_ANSWERS)


@pytest.mark.parametrize(("method", "path"), list(CALLS), ids=[f"{m} {p}" for m, p in CALLS])
def test_the_answer_keeps_to_its_schema(client: TestClient, method: str, path: str) -> None:
    schema = client.get("/schema/openapi.json").json()
    answer = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    url, body = CALLS[method, path]
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == 200, r.text
    validator = jsonschema.Draft202012Validator({**answer, "components": schema["components"]})
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(r.json())]
    assert errors == [], errors
