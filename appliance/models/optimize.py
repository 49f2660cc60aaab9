"""`alveare model optimize`: a copy of the model requantised to a type with batched CPU kernels,
kept only if it passes a quality gate and is faster on this machine.

ggml has no batched CPU matmul for Q4_1 (the embedded model's type): no llamafile GEMM and no
repacked kernel, so a prefill of N tokens costs N dot products. Q4_0 and Q8_0 have both. The copy is
made with llama.cpp's quantize API (allow_requantize), measured against the original on a fixed text
and fixed prompts (measure.py), and kept in `<data dir>/models/` with a JSON report beside it; `serve`
loads it instead of the original while the original's path, size and mtime match the report.

No llama_cpp import at module level: `alveare model show` and `serve`'s look-up only read reports.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from appliance.engine.native.kernels import KernelCache, KernelSetting, choose_kernels, cpu_signature
from appliance.models.gate import choose, judge, speed_ratios, verdict
from appliance.models.report import (
    Gate,
    Report,
    Result,
    Speed,
    copy_path,
    file_stem,
    report_path,
    source_of,
    write_report,
)

if TYPE_CHECKING:
    from appliance.models.measure import Measurement

CANDIDATES: tuple[str, ...] = ("q4_0", "q8_0")
# What serve tries by itself for the embedded model: Q8_0 holds Q4_1's weights almost exactly
# (+0.2% perplexity on the embedded model), while Q4_0 rounds them again onto a coarser grid (+17%,
# which the gate rejects), so trying it would only make the first start longer.
AUTO_CANDIDATES: tuple[str, ...] = ("q8_0",)
REPORT_SUFFIX = ".optimize.json"


def optimize(
    model_path: str,
    models_dir: Path,
    *,
    kinds: Sequence[str] = CANDIDATES,
    threads: int,
    cpu_kernels: KernelSetting = "auto",
    kernel_cache: Path | None = None,
    gate: Gate = Gate(),  # noqa: B008 - frozen
    text_limit: int | None = None,
    prompts: Sequence[str] | None = None,
    answer_tokens: int | None = None,
    repeats: int = 5,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """Requantise `model_path` to each type in `kinds`, measure, keep the best passing copy (if any)
    in `models_dir` and write the report beside it. Rejected copies are deleted."""
    from appliance.engine.native.llama import QUANT_TYPES, quantize, quiet_native_logs
    from appliance.models import measure

    quiet_native_logs(False)
    prompts = measure.PROMPTS if prompts is None else prompts
    answer_tokens = measure.ANSWER_TOKENS if answer_tokens is None else answer_tokens
    source = source_of(model_path)
    models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = KernelCache(kernel_cache)
    t0 = time.monotonic()

    def measured(path: str, reference: list[list[int]] | None) -> tuple[str, Measurement]:
        # The kernel check's verdict for this file (a child process the first time, then remembered):
        # a CPU whose fast kernels crash measures, and later serves, the safe ones.
        kernels = choose_kernels(cpu_kernels, path, cache=cache)
        progress(f"  CPU kernels: {kernels.mode} ({kernels.source})")
        return kernels.mode, measure.measure(
            path,
            threads=threads,
            extra_bufts=kernels.mode == "fast",
            text_limit=text_limit,
            prompts=prompts,
            answer_tokens=answer_tokens,
            reference=reference,
            progress=progress,
        )

    progress(f"Measuring the original {source.path}")
    mode, base = measured(model_path, None)
    progress(f"  perplexity {base.perplexity:.3f}")
    source = msgspec.structs.replace(source, description=base.description)
    original = Result(
        type="original",
        description=base.description,
        path=source.path,
        size_bytes=source.size,
        kernels=mode,
        perplexity=base.perplexity,
        speed=Speed(prefill=0, decode_batch=0, decode_one=0),
    )
    candidates: list[Result] = []
    made: list[Path] = []
    try:
        for kind in kinds:
            if QUANT_TYPES[kind] == base.ftype:
                progress(f"Skipping {kind}: the model is {kind} already")
                continue
            target = copy_path(models_dir, source, kind)
            progress(f"Requantising to {kind}: {target}")
            # Written beside, then renamed: a running server may have a previous copy of this name mapped.
            tmp = target.with_name(f".{target.name}.partial")
            try:
                quantize(model_path, str(tmp), kind=kind, threads=threads)
                tmp.chmod(0o600)  # like every file in the data dir
                os.replace(tmp, target)
                made.append(target)
            finally:
                tmp.unlink(missing_ok=True)
            mode, m = measured(str(target), base.answers)
            prefixes = [measure.shared_prefix(a, b) for a, b in zip(m.answers, base.answers, strict=True)]
            result = Result(
                type=kind,
                description=m.description,
                path=str(target),
                size_bytes=target.stat().st_size,
                kernels=mode,
                perplexity=m.perplexity,
                speed=original.speed,
                perplexity_increase=round(m.perplexity / base.perplexity - 1, 4),
                agreement=round(m.forced_matches / m.forced_total, 4) if m.forced_total else 1.0,
                exact_answers=sum(a == b for a, b in zip(m.answers, base.answers, strict=True)),
                shared_prefix_mean=round(sum(prefixes) / max(1, len(prefixes)), 1),
            )
            progress(
                f"  perplexity {m.perplexity:.3f} ({result.perplexity_increase:+.1%}), greedy agreement "
                f"{result.agreement:.0%}, {result.exact_answers} of {len(prompts)} answers the same"
            )
            candidates.append(result)
        if candidates:
            copies = f"{len(candidates)} cop{'y' if len(candidates) == 1 else 'ies'}"
            progress(f"Measuring speed: the original and {copies} in turns, {repeats} rounds")
            models = [(original.path, original.kernels == "fast")] + [(c.path, c.kernels == "fast") for c in candidates]
            speeds = measure.measure_speed(models, threads=threads, repeats=repeats)
            original.speed = speeds[0]
            progress(f"  original: {_speed_line(speeds[0])}")
            for c, speed in zip(candidates, speeds[1:], strict=True):
                c.speed = speed
                c.ratios = speed_ratios(original.speed, speed)
                c.passed, c.faster, speedup, c.reasons = judge(
                    original_perplexity=base.perplexity,
                    perplexity=c.perplexity,
                    agreement=c.agreement or 0.0,
                    ratios=c.ratios,
                    gate=gate,
                )
                c.speedup = round(speedup, 3)
                progress(f"  {c.type}: {_speed_line(speed)} ({c.speedup:.2f}x)")
        kept = choose(candidates)
    except BaseException:  # an error or Ctrl-C: no half-measured copy stays behind
        for path in made:
            path.unlink(missing_ok=True)
        raise
    for c in candidates:
        if c is not kept:
            Path(c.path).unlink(missing_ok=True)
    # Copies of this source from earlier runs that this one did not keep.
    for old in models_dir.glob(f"{file_stem(source)}.*.gguf"):
        if kept is None or str(old) != kept.path:
            old.unlink(missing_ok=True)
    here = cpu_signature()
    report = Report(
        source=source,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        cpu=here.split(" | ")[0],
        cpu_signature=here,
        llama_cpp_python=_llama_cpp_version(),
        threads=threads,
        gate=gate,
        text_tokens=base.scored_tokens,
        prompts=len(prompts),
        answer_tokens=answer_tokens,
        original=original,
        candidates=candidates,
        kept=kept.type if kept else None,
        copy_path=kept.path if kept else None,
        copy_size=kept.size_bytes if kept else None,
        verdict=verdict(kept, candidates),
    )
    write_report(report_path(models_dir, source), report)
    progress(f"Done in {time.monotonic() - t0:.0f} s: {report.verdict}")
    return report


def _speed_line(s: Speed) -> str:
    return f"prefill {s.prefill:.0f} tok/s, decode x8 {s.decode_batch:.0f} tok/s, x1 {s.decode_one:.0f} tok/s"


def _llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
