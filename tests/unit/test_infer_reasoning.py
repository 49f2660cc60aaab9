"""POST /v1/infer on a model that thinks (a fake engine whose template writes <think>), through the
Python SDK: the block goes to `reasoning`, apart from `result`, as --reasoning-format says; a shaped
answer (labels) may come after it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from alveare import Client
from appliance.api import create_app
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

THINKS = "{{ messages }} <think> {{ reasoning }} </think>"


def serve(tmp_path: Path, engine: FakeEngine, **settings: Any) -> Iterator[Client]:
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]
    app = create_app(
        Settings(data_dir=str(tmp_path), **settings), engine=engine, store=store, specialists=load_specialists()
    )
    with TestClient(app, raise_server_exceptions=False) as http:
        yield Client(api_key=key, base_url=str(http.base_url), http_client=http, max_retries=0)
    store.close()


@pytest.mark.parametrize(
    ("engine", "reasoning", "result"),
    [
        # The model opens the block.
        (FakeEngine(template=THINKS, reply="<think>It is Paris.</think>\n\nParis."), "It is Paris.", "Paris."),
        # The template opens it; cut off inside it, the answer is all reasoning.
        (
            FakeEngine(template=THINKS, generation_tail="<think>\n", reply="Hmm, let me", outcome="length"),
            "Hmm, let me",
            "",
        ),
        # A model that does not think: its text as it is, no reasoning.
        (FakeEngine(reply="<think>x</think> y"), None, "<think>x</think> y"),
    ],
    ids=["model-opens", "template-opens-cut", "no-thinking"],
)
def test_the_block_goes_to_reasoning(tmp_path: Path, engine: FakeEngine, reasoning: str | None, result: str) -> None:
    for client in serve(tmp_path, engine):
        r = client.infer("chat", "What is the capital of France?")
        assert (r.reasoning, r.result) == (reasoning, result)


def test_reasoning_format_none_leaves_it_in_the_result(tmp_path: Path) -> None:
    engine = FakeEngine(template=THINKS, reply="<think>It is Paris.</think> Paris.")
    for client in serve(tmp_path, engine, reasoning_format="none"):
        r = client.infer("chat", "What is the capital of France?")
        assert r.reasoning is None and r.result == "<think>It is Paris.</think> Paris."


def test_a_label_comes_after_the_block(tmp_path: Path) -> None:
    engine = FakeEngine(template=THINKS, reply="<think>Money matters.</think> billing")
    for client in serve(tmp_path, engine):
        r = client.infer("classify", "I was charged twice.")
        assert (r.reasoning, r.result) == ("Money matters.", "billing")
