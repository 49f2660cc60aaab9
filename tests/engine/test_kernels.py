"""The CPU kernel check: a child process that crashes, fails or disagrees means safe kernels, once per
model, llama.cpp build and CPU; the real check passes on this machine's fast kernels.

The fallback is what a virtualised Xeon with AMX needs; it is forced here with fake children, since
no CPU in CI may have AMX."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from appliance.engine.engine import embedded_model_path
from appliance.engine.native.kernels import (
    CheckResult,
    KernelCache,
    child_command,
    choose_kernels,
    cpu_signature,
    run_check,
)

XEON_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu avx512f amx_tile amx_int8 amx_bf16 avx2
"""


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_killed_by_a_signal_names_it() -> None:
    result = run_check(child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    assert not result.ok and "SIGSEGV" in result.reason and "crashed" in result.reason


def test_a_child_that_exits_non_zero_or_says_nothing_is_a_failure() -> None:
    assert not run_check(child("print('mismatch: 1 vs 2'); raise SystemExit(1)")).ok
    assert "mismatch" in run_check(child("print('mismatch: 1 vs 2'); raise SystemExit(1)")).reason
    assert not run_check(child("pass")).ok
    assert run_check(child("print('ok: agree')")).ok


def test_a_model_that_will_not_load_decides_nothing(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(256))
    result = run_check(child_command(str(corrupt)))
    assert not result.ok and not result.conclusive and result.reason.startswith("unloadable")
    choice = choose_kernels(
        "auto", str(corrupt), cache=KernelCache(tmp_path / "k.json"), check=lambda path: result, build=lambda: "b"
    )
    assert choice.mode == "safe" and not (tmp_path / "k.json").exists()


def test_a_child_that_hangs_is_a_failure() -> None:
    result = run_check(child("import time; time.sleep(30)"), timeout_s=0.5)
    assert not result.ok and "did not finish" in result.reason


def test_cpu_signature_reads_the_model_name_and_sorted_flags() -> None:
    sig = cpu_signature(XEON_AMX)
    assert sig.startswith("Intel(R) Xeon(R) Platinum 8488C | ")
    assert "amx_tile" in sig and sig.index("amx_bf16") < sig.index("avx2")


def _choose(tmp_path: Path, check, *, setting="auto", cpu=XEON_AMX, gpu=False):
    calls = []

    def counted(path: str) -> CheckResult:
        calls.append(path)
        return check(path)

    choice = choose_kernels(
        setting,
        embedded_model_path(),
        cache=KernelCache(tmp_path / "cpu-kernels.json"),
        gpu_offload_all=gpu,
        cpu=lambda: cpu_signature(cpu),
        build=lambda: "llama-cpp-python test build",
        check=counted,
    )
    return choice, calls


def test_a_crash_falls_back_to_safe_kernels_once_and_is_remembered(tmp_path, caplog) -> None:
    crash = lambda path: run_check(child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))  # noqa: E731
    with caplog.at_level("WARNING", logger="alveare.hive"):
        choice, calls = _choose(tmp_path, crash)
    assert (choice.mode, choice.source) == ("safe", "check") and "SIGSEGV" in choice.reason
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "safe CPU kernels" in warnings[0].getMessage()
    assert len(calls) == 1
    saved = tmp_path / "cpu-kernels.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    # The next start on the same model, build and CPU does not run the check again.
    again, calls = _choose(tmp_path, crash)
    assert (again.mode, again.source, again.reason) == ("safe", "cache", choice.reason) and calls == []
    # Another CPU (the same data dir moved to an AMD host) is checked afresh.
    other, calls = _choose(tmp_path, lambda path: CheckResult(True, "ok"), cpu="model name\t: AMD EPYC\n")
    assert (other.mode, other.source) == ("fast", "check") and len(calls) == 1
    assert len(json.loads(saved.read_text())) == 2


def test_a_setting_or_a_full_gpu_offload_skips_the_check(tmp_path) -> None:
    never = lambda path: pytest.fail("the check must not run")  # noqa: E731
    assert _choose(tmp_path, never, setting="safe")[0].mode == "safe"
    forced = _choose(tmp_path, never, setting="fast")[0]
    assert (forced.mode, forced.source) == ("fast", "setting")
    gpu = _choose(tmp_path, never, gpu=True)[0]
    assert (gpu.mode, gpu.source) == ("fast", "gpu")
    assert not (tmp_path / "cpu-kernels.json").exists()


def test_an_unreadable_cache_file_means_checking_again(tmp_path) -> None:
    (tmp_path / "cpu-kernels.json").write_text("{not json")
    choice, calls = _choose(tmp_path, lambda path: CheckResult(True, "ok"))
    assert choice.source == "check" and len(calls) == 1


def _amx_crash(reason: str) -> bool:
    """The real fast kernels crashed, on a CPU with AMX: the virtualised Xeons the check is for."""
    return "amx_tile" in cpu_signature() and reason == "the fast CPU kernels crashed the check (SIGSEGV)"


def test_the_real_check_passes_on_this_machine() -> None:
    result = run_check(child_command(embedded_model_path()))
    if _amx_crash(result.reason):  # what the check exists for: this machine is one of those
        assert not result.ok
        return
    assert result.ok, result.reason
    # Every prompt row was compared, so the output matrix went through the batched kernels too.
    assert re.match(r"ok: fast and safe kernels agree at all (\d+) positions", result.reason)
    assert int(result.reason.split()[8]) > 2


def test_a_model_with_fast_kernels_only_for_its_output_is_checked_batched(tmp_path, monkeypatch) -> None:
    """A Q5_0 file has no AMX kernels for its layers, only for its Q8_0 output tensor; the check
    used to multiply that with one row (one-row kernel, no crash) and pass it on a Xeon whose AMX
    kernels then crashed the server's first step of several sequences. It must reach the same
    verdict as for the embedded model, whose layers do use them."""
    import llama_cpp

    from appliance.engine.native import llama

    monkeypatch.setitem(llama.QUANT_TYPES, "q5_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0)
    copy = tmp_path / "q5_0.gguf"
    llama.quantize(embedded_model_path(), str(copy), kind="q5_0", threads=2)
    original = run_check(child_command(embedded_model_path()))
    result = run_check(child_command(str(copy)))
    assert result.ok == original.ok, (original.reason, result.reason)
    if not original.ok:
        assert _amx_crash(original.reason) and _amx_crash(result.reason)


@pytest.mark.parametrize("fault", ["crash", "wrong"])
def test_the_real_check_fails_when_told_to(fault: str, monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_KERNEL_CHECK_FAULT", fault)
    result = run_check(child_command(embedded_model_path()))
    assert not result.ok
    if fault == "wrong" and _amx_crash(result.reason):
        return  # the real fast kernels crash before the injected disagreement is reached
    assert ("SIGSEGV" in result.reason) if fault == "crash" else ("mismatch" in result.reason)
