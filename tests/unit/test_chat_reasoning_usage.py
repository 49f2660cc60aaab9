"""Chat completions' usage on a model that thinks (a fake engine whose template writes <think>), through
the official openai SDK: completion_tokens_details.reasoning_tokens counts the block's tokens, whole and
in the streamed usage chunk, summed over n choices; 0 where there is no block, as OpenAI sends it for a
model that does not reason. The legacy completions carry the same details, at 0."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

THINKS = "{{ messages }} <think> {{ reasoning }} </think>"
# The fake tokenizes a character a token and counts an answer's words as its completion tokens: the
# block's 21 characters are 21 reasoning tokens of the answer's 31 (the count is at most the answer's).
REPLY = "<think>Paris.</think> " + " ".join(["Paris"] * 30)
BLOCK = len("<think>Paris.</think>")
ASK: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


def serve(tmp_path: Path, engine: FakeEngine, **settings: Any) -> Iterator[openai.OpenAI]:
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]
    app = create_app(
        Settings(data_dir=str(tmp_path), **settings), engine=engine, store=store, specialists=load_specialists()
    )
    with TestClient(app, raise_server_exceptions=False) as http:
        yield openai.OpenAI(base_url=f"{http.base_url}/v1", api_key=key, http_client=http, max_retries=0)
    store.close()


@pytest.mark.parametrize("n", [1, 2])
def test_reasoning_tokens_whole_and_streamed(tmp_path: Path, n: int) -> None:
    for client in serve(tmp_path, FakeEngine(template=THINKS, reply=REPLY)):
        r = client.chat.completions.create(model="chat", messages=ASK, n=n)
        assert r.usage and r.usage.completion_tokens_details
        assert r.usage.completion_tokens_details.reasoning_tokens == BLOCK * n
        assert r.usage.completion_tokens == 31 * n
        chunks = list(
            client.chat.completions.create(
                model="chat", messages=ASK, n=n, stream=True, stream_options={"include_usage": True}
            )
        )
        usage = chunks[-1].usage
        assert chunks[-1].choices == [] and usage and usage.completion_tokens_details
        assert usage.completion_tokens_details.reasoning_tokens == BLOCK * n


@pytest.mark.parametrize(
    "settings", [{}, {"reasoning_format": "none"}], ids=["a-model-that-does-not-think", "reasoning-format-none"]
)
def test_no_block_split_out_is_zero(tmp_path: Path, settings: dict[str, Any]) -> None:
    template = THINKS if settings else ""
    for client in serve(tmp_path, FakeEngine(template=template, reply=REPLY), **settings):
        r = client.chat.completions.create(model="chat", messages=ASK)
        assert r.choices[0].message.content == REPLY
        assert r.usage and r.usage.completion_tokens_details
        assert r.usage.completion_tokens_details.reasoning_tokens == 0
        [*_, last] = client.chat.completions.create(
            model="chat", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        assert last.usage and last.usage.completion_tokens_details
        assert last.usage.completion_tokens_details.reasoning_tokens == 0
        legacy = client.completions.create(model="chat", prompt="hi")
        assert legacy.usage and legacy.usage.completion_tokens_details
        assert legacy.usage.completion_tokens_details.reasoning_tokens == 0
