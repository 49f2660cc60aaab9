"""Specialists that are fine-tunes (issue 36), the way an admin and an app meet them: a LoRA adapter
declared in specialists.toml, and one sent at run time with `alveare specialists adapter set`,
kept in the data dir over a restart; the openai SDK sees which specialists carry one.

The adapters are random rank-8 ones made for the embedded model (appliance/models/lora_file.py), at
an alpha strong enough to change its greedy answer to QUESTION (16 does not); tests/engine/
test_adapters.py checks that what the engine applies is the merged model's answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import openai
import pytest
from live import LiveServer, cli, start_server

from appliance.engine.engine import embedded_model_path
from appliance.models.lora_file import architecture, random_pairs, write_adapter

QUESTION = [{"role": "user", "content": "Name three things you find by a river."}]
SYSTEM = "You are a helpful assistant. Answer briefly."
ALPHA = 64.0


def specialists_toml(adapter: Path) -> str:
    profile = f'system_prompt = "{SYSTEM}"\ntemperature = 0.0\nmax_tokens = 16\n'
    return (
        f"[specialists.plain]\n{profile}\n"
        f'[specialists.tuned]\n{profile}adapter = "{adapter.name}"\n'
        '\n[aliases]\n"gpt-4o-mini" = "plain"\n'
    )


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapter-files")
    reader = gguf.GGUFReader(embedded_model_path())
    write_adapter(random_pairs(reader, 8), architecture(reader), ALPHA, root / "tuned.gguf")
    write_adapter(random_pairs(reader, 8), "gemma3", ALPHA, root / "for-gemma.gguf")
    (root / "specialists.toml").write_text(specialists_toml(root / "tuned.gguf"))
    return root


@pytest.fixture(scope="module")
def tuned_server(tmp_path_factory: pytest.TempPathFactory, adapters: Path) -> Iterator[LiveServer]:
    live = start_server(
        tmp_path_factory.mktemp("alveare-adapters"), "--specialists", str(adapters / "specialists.toml")
    )
    try:
        yield live
    finally:
        live.stop()


def answer(server: LiveServer, key: str, model: str) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=model, messages=QUESTION)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def adapter_cli(server: LiveServer, *args: str, check: bool = True):
    target = ["--url", server.url, "--admin-key", server.admin_key]
    if server.ca_cert is not None:
        target += ["--ca-cert", str(server.ca_cert)]
    action, *rest = args
    return cli(server.data_dir, "specialists", "adapter", action, *target, *rest, check=check)


def test_a_specialist_declared_with_an_adapter_answers_as_its_fine_tune(tuned_server: LiveServer) -> None:
    key = tuned_server.new_key("adapter-app")
    client = openai.OpenAI(base_url=tuned_server.base_url, api_key=key, max_retries=0)
    models = {m.id: m.model_extra.get("adapter") for m in client.models.list()}  # type: ignore[union-attr]
    assert models == {"alveare-plain": None, "alveare-tuned": "tuned.gguf"}
    info = httpx.get(
        tuned_server.base_url + "/model/info", params={"model": "tuned"}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert info["adapter"]["file"] == "tuned.gguf" and info["adapter"]["scale"] == 1.0
    # The same prompt and parameters: only the adapter differs, and it changes the answer.
    assert answer(tuned_server, key, "tuned") != answer(tuned_server, key, "plain")


def test_an_adapter_set_at_run_time_is_served_kept_and_cleared(tuned_server: LiveServer, adapters: Path) -> None:
    key = tuned_server.new_key("adapter-runtime")
    plain, tuned = answer(tuned_server, key, "plain"), answer(tuned_server, key, "tuned")
    done = adapter_cli(tuned_server, "set", "plain", str(adapters / "tuned.gguf"))
    assert "plain decodes under the adapter tuned.gguf" in done.stdout
    # The same file on the same prompt and parameters: plain answers as tuned does, through its alias too.
    assert answer(tuned_server, key, "plain") == tuned
    assert answer(tuned_server, key, "gpt-4o-mini") == tuned
    status = httpx.get(
        tuned_server.base_url + "/hive/status", headers={"Authorization": f"Bearer {tuned_server.admin_key}"}
    ).json()
    assert sorted(a["specialist"] for a in status["adapters"]) == ["plain", "tuned"]
    kept = tuned_server.data_dir / "adapters"
    assert (kept / "plain.json").is_file() and len(list(kept.glob("plain-*.gguf"))) == 1

    cleared = adapter_cli(tuned_server, "clear", "plain")
    assert "plain decodes on the base model" in cleared.stdout
    assert answer(tuned_server, key, "plain") == plain
    assert not list(kept.glob("plain*"))


def test_an_adapter_for_another_model_is_refused_with_one_line(tuned_server: LiveServer, adapters: Path) -> None:
    refused = adapter_cli(tuned_server, "set", "plain", str(adapters / "for-gemma.gguf"), check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "not a LoRA adapter for this model" in refused.stderr and "arch" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    missing = adapter_cli(tuned_server, "set", "plain", str(adapters / "nowhere.gguf"), check=False)
    assert missing.returncode != 0 and "cannot read the adapter file" in missing.stderr
    unknown = adapter_cli(tuned_server, "set", "nobody", str(adapters / "tuned.gguf"), check=False)
    assert unknown.returncode != 0 and "No specialist named 'nobody'" in unknown.stderr
    # Nothing of the refused files is kept.
    assert not list((tuned_server.data_dir / "adapters").glob("plain*"))


def test_a_kept_adapter_is_loaded_again_at_start(tmp_path: Path, adapters: Path) -> None:
    toml = str(adapters / "specialists.toml")
    first = start_server(tmp_path / "data", "--specialists", toml)
    try:
        key = first.new_key("restart-app")
        tuned = answer(first, key, "tuned")
        adapter_cli(first, "set", "plain", str(adapters / "tuned.gguf"), "--scale", "1")
    finally:
        first.stop()
    again = start_server(tmp_path / "data", "--specialists", toml)
    try:
        assert answer(again, key, "plain") == tuned
    finally:
        again.stop()
