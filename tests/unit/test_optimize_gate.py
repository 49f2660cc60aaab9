"""The optimisation gate, pure: a copy is kept only if its perplexity and greedy agreement stay within
the margins and it is faster than the original; the fastest such copy wins. And the look-up `serve`
makes: a report counts only while the original is the file it was made from."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from appliance.engine.native.kernels import cpu_signature
from appliance.engine.tuning.solo_lane import SOLO_ONE_ROW_FLOOR
from appliance.models.gate import choose, gate_for, judge, speed_ratios, verdict
from appliance.models.report import Gate, Report, Result, Source, Speed, copy_path, report_path, source_of, write_report
from appliance.models.select import copy_state, optimized_copy

BASE = Speed(prefill=100.0, decode_batch=100.0, decode_one=100.0)


def ratios(prefill: float, batch: float, one: float) -> dict[str, float]:
    return speed_ratios(BASE, Speed(prefill=prefill, decode_batch=batch, decode_one=one))


def test_a_copy_within_the_margins_and_faster_passes() -> None:
    passed, faster, speedup, reasons = judge(
        original_perplexity=20.0, perplexity=20.9, agreement=0.95, ratios=ratios(190, 140, 95), gate=Gate()
    )
    assert passed and faster and reasons == []
    assert speedup == pytest.approx((1.9 * 1.4 * 0.95) ** (1 / 3))


@pytest.mark.parametrize(
    ("perplexity", "agreement", "words"),
    [
        (21.1, 0.95, "perplexity +5.5% (at most +5%)"),
        (20.0, 0.89, "greedy agreement 89% (at least 90%)"),
    ],
)
def test_a_copy_outside_a_margin_fails_the_gate_and_says_why(perplexity, agreement, words) -> None:
    passed, faster, _, reasons = judge(
        original_perplexity=20.0, perplexity=perplexity, agreement=agreement, ratios=ratios(200, 200, 200), gate=Gate()
    )
    assert not passed and faster and reasons == [words]


def test_a_copy_that_is_not_faster_passes_the_gate_but_is_not_kept() -> None:
    passed, faster, speedup, reasons = judge(
        original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=ratios(104, 104, 104), gate=Gate()
    )
    assert passed and not faster and speedup == pytest.approx(1.04)
    assert reasons == ["speed 1.04x the original's (at least 1.05x)"]
    # a non-finite perplexity (a broken copy) never passes
    assert not judge(original_perplexity=20.0, perplexity=float("nan"), agreement=1.0, ratios={}, gate=Gate())[0]


def test_a_copy_much_slower_at_one_measurement_is_not_kept_whatever_its_mean() -> None:
    # The Xeon figures for Q8_0 against Q4_1: 1.9x prefill, 1.02x 8-row, 0.76x 1-row decode.
    passed, faster, speedup, reasons = judge(
        original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=ratios(190, 102, 76), gate=Gate()
    )
    assert passed and not faster and speedup == pytest.approx(1.14, abs=0.01)
    assert reasons == ["1-row decode 0.76x the original's (at least 0.80x)"]
    # A little slower at one, within the floor (AMD EPYC's Q8_0: 0.90-0.98x at 1 row): the mean decides.
    assert judge(original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=ratios(190, 140, 90), gate=Gate())[1]


def test_with_the_solo_lane_the_one_row_floor_is_lower() -> None:
    """The original decodes lone requests beside the copy, so the Xeon's copy (1.95x prefill, 1.30x
    8-row, 0.78x 1-row: kept or not by a hair at 0.80x) is kept; a far slower one still is not."""
    xeon = ratios(195, 130, 78)
    assert not judge(original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=xeon, gate=gate_for(False))[1]
    passed, faster, _, reasons = judge(
        original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=xeon, gate=gate_for(True)
    )
    assert passed and faster and reasons == []
    _, faster, _, reasons = judge(
        original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=ratios(195, 130, 65), gate=gate_for(True)
    )
    assert not faster and reasons == [f"1-row decode 0.65x the original's (at least {SOLO_ONE_ROW_FLOOR:.2f}x)"]
    # The other two keep the common floor.
    assert not judge(
        original_perplexity=20.0, perplexity=20.0, agreement=1.0, ratios=ratios(300, 75, 100), gate=gate_for(True)
    )[1]


def result(kind: str, *, passed: bool, faster: bool, speedup: float) -> Result:
    return Result(
        type=kind,
        description="",
        path=f"/m/{kind}.gguf",
        size_bytes=1,
        kernels="fast",
        perplexity=20.0,
        speed=BASE,
        perplexity_increase=0.01,
        agreement=0.95,
        speedup=speedup,
        passed=passed,
        faster=faster,
        reasons=[] if passed and faster else ["perplexity +17.0% (at most +5%)"],
    )


def test_the_fastest_passing_copy_is_kept() -> None:
    q4 = result("q4_0", passed=False, faster=True, speedup=1.4)
    q8 = result("q8_0", passed=True, faster=True, speedup=1.2)
    slow = result("q8_0", passed=True, faster=False, speedup=1.01)
    assert choose([q4, q8]) is q8
    assert choose([q4, slow]) is None
    assert verdict(q8, [q4, q8]).startswith("kept the q8_0 copy: perplexity +1.0%, greedy agreement 95%, 1.20x")
    assert verdict(None, [q4]) == (
        "kept no copy (q4_0: perplexity +17.0% (at most +5%)); serve keeps loading the original"
    )


def make_report(models: Path, source: Source, copy: Path | None) -> Report:
    original = result("original", passed=True, faster=True, speedup=1.0)
    return Report(
        source=source,
        created_at="2026-11-25T00:00:00Z",
        cpu=cpu_signature().split(" | ")[0],
        cpu_signature=cpu_signature(),
        llama_cpp_python="0",
        threads=1,
        gate=Gate(),
        text_tokens=1,
        prompts=1,
        answer_tokens=1,
        original=original,
        candidates=[],
        kept="q8_0" if copy else None,
        copy_path=str(copy) if copy else None,
        copy_size=copy.stat().st_size if copy else None,
    )


def test_serve_finds_a_copy_only_while_the_original_is_unchanged(tmp_path) -> None:
    original = tmp_path / "model.gguf"
    original.write_bytes(b"GGUF original")
    models = tmp_path / "models"
    models.mkdir()
    source = source_of(str(original))
    copy = copy_path(models, source, "q8_0")
    copy.write_bytes(b"GGUF copy")
    write_report(report_path(models, source), make_report(models, source, copy))
    assert report_path(models, source).stat().st_mode & 0o777 == 0o600

    found = optimized_copy(str(original), models)
    assert found is not None and found.copy_path == str(copy) and copy_state(found) == "in use"
    assert optimized_copy(str(tmp_path / "other.gguf"), models) is None

    copy.write_bytes(b"GGUF copy, damaged")
    assert optimized_copy(str(original), models) is None and copy_state(found) == "the copy changed since"
    copy.unlink()
    assert copy_state(found) == "the copy is missing"
    copy.write_bytes(b"GGUF copy")

    # Measured on another CPU (a data dir moved to another machine): not served there.
    elsewhere = msgspec.structs.replace(found, cpu_signature="Another CPU | avx512f")
    write_report(report_path(models, source), elsewhere)
    assert optimized_copy(str(original), models) is None
    assert copy_state(elsewhere) == "measured on another CPU (run optimize again)"
    write_report(report_path(models, source), found)

    # A new file at the same path (a model upgraded in place): the report no longer applies.
    os.utime(original, (1, 1))
    assert optimized_copy(str(original), models) is None
    assert copy_state(found) == "the original changed since (run optimize again)"


def test_a_report_without_a_kept_copy_serves_the_original(tmp_path) -> None:
    original = tmp_path / "model.gguf"
    original.write_bytes(b"GGUF original")
    models = tmp_path / "models"
    models.mkdir()
    source = source_of(str(original))
    write_report(report_path(models, source), make_report(models, source, None))
    assert optimized_copy(str(original), models) is None
    report_path(models, source).write_text("{not json")
    assert optimized_copy(str(original), models) is None
