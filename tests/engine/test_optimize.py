"""`alveare model optimize` on the real embedded model: a real requantisation to Q4_0 into a data dir,
measured against the original; the default gate rejects it (requantising Q4_1 weights to Q4_0 costs
about +17% perplexity) and deletes it, a loosened gate keeps it, and `serve` then loads the copy and
says so in /v1/hive/status. Short text and few prompts keep it quick; no speed is asserted."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import llama_cpp
import msgspec
import pytest
from live import start_server

from appliance.boot import plan
from appliance.boot.facts import gather, gpu_offload
from appliance.cli import main
from appliance.core.settings import Settings, load_settings
from appliance.engine.engine import embedded_model_path
from appliance.models.gate import judge
from appliance.models.optimize import optimize
from appliance.models.report import Gate, Report, read_report, report_path, source_of, write_report
from appliance.models.select import copy_state, measured_here, optimized_copy

pytestmark = pytest.mark.slow


def served_model(settings: Settings, model_path: str) -> str:
    """The file serve's start plan loads for `model_path` with these settings."""
    asked = msgspec.structs.replace(settings, model_path=model_path)
    return plan.plan_startup(asked, gather(asked)).served_path


def optimize_first(settings: Settings, model_path: str, embedded: str | None) -> bool:
    """The plan's first-start rule, with `embedded` standing in for the embedded model's file."""
    facts = plan.ModelFacts(
        model_path=model_path,
        embedded_path=embedded,
        gpu_offload=gpu_offload(settings),
        measured_here=measured_here(model_path, settings.models_path),
        copy=None,
    )
    return plan.optimize_first(settings, facts)


PROMPTS = ("What is the capital of France?", "Write one sentence about the sea.")
# Only quality counts here: any speed passes, so the test never depends on this machine's timing.
QUALITY_ONLY = Gate(max_perplexity_increase=1.0, min_agreement=0.0, min_speedup=0.0, min_each=0.0)


def run_optimize(data: Path, source: Path, gate: Gate) -> Report:
    return optimize(
        str(source),
        data / "models",
        kinds=("q4_0",),
        threads=1,
        kernel_cache=data / "cpu-kernels.json",
        gate=gate,
        text_limit=200,
        prompts=PROMPTS,
        answer_tokens=12,
        repeats=1,
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path, Report, Report, bool]:
    """A data dir and a model file of its own (so the test may change it), optimised twice: with the
    default gate, then with one that only asks for a working copy."""
    root = tmp_path_factory.mktemp("optimize")
    source = root / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copy2(embedded_model_path(), source)
    data = root / "data"
    data.mkdir(mode=0o700)
    rejected = run_optimize(data, source, Gate())
    rejected_left = any((data / "models").glob("*.gguf"))
    kept = run_optimize(data, source, QUALITY_ONLY)
    return data, source, rejected, kept, rejected_left


def test_the_default_gate_rejects_the_q4_0_copy_and_deletes_it(made) -> None:
    _, _, rejected, _, rejected_left = made
    (q4,) = rejected.candidates
    assert q4.type == "q4_0" and "Q4_0" in q4.description and "Q4_1" in rejected.source.description
    # Perplexity on the same tokens, the copy worse by more than the 5% margin.
    assert rejected.original.perplexity > 1 and q4.perplexity_increase is not None and q4.perplexity_increase > 0.05
    assert not q4.passed and any(r.startswith("perplexity +") for r in q4.reasons)
    assert rejected.kept is None and rejected.copy_path is None and "kept no copy" in rejected.verdict
    assert not rejected_left


def test_the_report_records_what_was_measured(made) -> None:
    data, source, _, kept, _ = made
    (q4,) = kept.candidates
    assert kept.kept == "q4_0" and kept.copy_path == q4.path and Path(q4.path).is_file()
    assert Path(q4.path).parent == data / "models" and kept.copy_size == os.path.getsize(q4.path)
    assert Path(q4.path).stat().st_mode & 0o777 == 0o600
    st = source.stat()
    assert (kept.source.path, kept.source.size, kept.source.mtime) == (str(source), st.st_size, int(st.st_mtime))
    assert kept.cpu and kept.llama_cpp_python and kept.threads == 1 and kept.prompts == 2
    assert kept.cpu_signature.startswith(kept.cpu + " | ")  # the model name, then the flags
    assert 100 < kept.text_tokens <= 200
    assert q4.agreement is not None and 0 <= q4.agreement <= 1 and q4.exact_answers is not None
    assert 0 <= q4.exact_answers <= 2 and q4.shared_prefix_mean is not None
    for r in (kept.original, q4):
        assert r.speed.prefill > 0 and r.speed.decode_batch > 0 and r.speed.decode_one > 0
        assert r.kernels in ("fast", "safe")
    assert set(q4.ratios) == {"prefill", "decode_batch", "decode_one"} and q4.speedup and q4.speedup > 0
    # The file on disk is the report returned, next to the copy, private like the data dir.
    path = report_path(data / "models", source_of(str(source)))
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_report(path) == kept and json.loads(path.read_text())["kept"] == "q4_0"
    # The same measurements under the default gate: rejected, for its perplexity.
    passed, _, _, reasons = judge(
        original_perplexity=kept.original.perplexity,
        perplexity=q4.perplexity,
        agreement=q4.agreement,
        ratios=q4.ratios,
        gate=Gate(),
    )
    assert not passed and "perplexity" in reasons[0]


@pytest.fixture
def cpu_build(monkeypatch) -> None:
    """The CPU's case on any build: a CUDA build (a GPU session runs these tests too) would offload
    every layer and serve the original, which the GPU cases below check on their own."""
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)


def test_serve_loads_the_copy_while_the_original_is_unchanged(made, cpu_build) -> None:
    data, source, _, kept, _ = made
    auto = load_settings({"data_dir": str(data)}, environ={})
    off = load_settings({"data_dir": str(data), "optimized_model": "off"}, environ={})
    assert served_model(auto, str(source)) == kept.copy_path
    assert served_model(off, str(source)) == str(source)
    with pytest.MonkeyPatch.context() as mp:  # a CUDA build offloads every layer: the CPU's winner is not used
        mp.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
        assert served_model(auto, str(source)) == str(source)
        no_gpu = load_settings({"data_dir": str(data), "gpu": "off"}, environ={})
        assert served_model(no_gpu, str(source)) == kept.copy_path
    assert optimized_copy(embedded_model_path(), data / "models") is None  # another file: no copy

    env = {"ALVEARE_OPTIMIZED_MODEL": "auto", "ALVEARE_GPU": "off"}  # the CPU's case on a CUDA build too
    server = start_server(data, "--model", str(source), "--slots", "2", "--ctx", "1024", env=env)
    try:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        status = httpx.get(server.base_url + "/hive/status", headers=headers).json()
        health = httpx.get(server.url + "/health").json()
    finally:
        server.stop()
    model = status["model"]
    assert model["file"] == kept.copy_path and model["optimized_from"] == str(source)
    assert model["name"] == health["model"] == source.stem  # clients see the same model name
    lines = [line for line in server.log_text().splitlines() if "optimised q4_0 copy" in line]
    assert len(lines) == 1 and "--optimized-model off" in lines[0]


def test_model_show_prints_the_report(made, capsys, monkeypatch, cpu_build) -> None:
    data, source, _, kept, _ = made
    monkeypatch.setenv("ALVEARE_OPTIMIZED_MODEL", "auto")  # whatever the environment running the tests says
    assert main(["--data-dir", str(data), "model", "show", "--model", str(source)]) == 0
    out = capsys.readouterr().out
    assert "q4_0" in out and "Verdict: kept the q4_0 copy" in out and "State:   in use" in out
    assert main(["--data-dir", str(data), "model", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in shown] == ["in use"] and shown[0]["report"]["copy_path"] == kept.copy_path
    # On a CUDA build serve offloads every layer and loads the original (served_model): show says so.
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert main(["--data-dir", str(data), "model", "show", "--json"]) == 0
    assert [s["state"] for s in json.loads(capsys.readouterr().out)] == [
        "not used: every layer runs on the GPU (--gpu off serves it on the CPU)"
    ]
    monkeypatch.setenv("ALVEARE_GPU", "off")
    assert main(["--data-dir", str(data), "model", "show", "--json"]) == 0
    assert [s["state"] for s in json.loads(capsys.readouterr().out)] == ["in use"]


def test_a_first_start_optimises_only_the_embedded_model_once_per_cpu(made, tmp_path, cpu_build) -> None:
    """serve's one-off step (optimize_first): the embedded model (here `source` stands in for it, or
    a fresh copy with no report yet), on a CPU, with --optimized-model auto, and only while no report
    on that file comes from this CPU; a report from another CPU also stops its copy being served."""
    data, source, _, kept, _ = made
    auto = load_settings({"data_dir": str(data)}, environ={})
    off = load_settings({"data_dir": str(data), "optimized_model": "off"}, environ={})
    assert not optimize_first(auto, str(source), str(source))  # measured on this CPU already
    fresh = tmp_path / "fresh.gguf"
    shutil.copy2(source, fresh)
    assert optimize_first(auto, str(fresh), str(fresh))
    assert not optimize_first(auto, str(fresh), str(source))  # a model the operator brought: only when asked
    assert not optimize_first(auto, str(fresh), None)  # no embedded model installed
    assert not optimize_first(off, str(fresh), str(fresh))
    with pytest.MonkeyPatch.context() as mp:  # every layer on a GPU: the CPU's kernels do not matter
        mp.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
        assert not optimize_first(auto, str(fresh), str(fresh))
    path = report_path(data / "models", source_of(str(source)))
    original = path.read_bytes()
    try:
        write_report(path, msgspec.structs.replace(kept, cpu_signature="Another CPU | avx512f"))
        assert optimize_first(auto, str(source), str(source))
        assert served_model(auto, str(source)) == str(source)
        assert copy_state(read_report(path)) == "measured on another CPU (run optimize again)"
        # A report from before the flags were recorded goes by the CPU's model name.
        write_report(path, msgspec.structs.replace(kept, cpu_signature=""))
        assert not optimize_first(auto, str(source), str(source))
        write_report(path, msgspec.structs.replace(kept, cpu_signature="", cpu="Another CPU"))
        assert optimize_first(auto, str(source), str(source))
    finally:
        path.write_bytes(original)
    assert served_model(auto, str(source)) == kept.copy_path


def test_a_changed_original_goes_back_to_serving_itself(made) -> None:
    data, source, _, _, _ = made
    settings = load_settings({"data_dir": str(data)}, environ={})
    os.utime(source, (1, 1))  # the same path, another file as far as the report knows
    assert served_model(settings, str(source)) == str(source)


def test_a_first_start_whose_child_fails_serves_the_original(tmp_path, capfd) -> None:
    from appliance.boot.first_start import optimize_embedded

    settings = load_settings({"data_dir": str(tmp_path / "data"), "threads": 2}, environ={})
    assert optimize_embedded(settings, str(tmp_path / "missing.gguf"), idle=lambda: None) is None
    err = capfd.readouterr().err
    assert "could not make an optimised copy of" in err and "serving the original" in err
    assert "Traceback" not in err
