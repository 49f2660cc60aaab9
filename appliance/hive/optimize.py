"""`alveare model optimize`: a copy of the model requantised to a type with batched CPU kernels,
kept only if it passes a quality gate and is faster on this machine.

ggml has no batched CPU matmul for Q4_1 (the embedded model's type): no llamafile GEMM and no
repacked kernel, so a prefill of N tokens costs N dot products. Q4_0 and Q8_0 have both. The copy is
made with llama.cpp's quantize API (allow_requantize), measured against the original on a fixed text
and fixed prompts (quality.py), and kept in `<data dir>/models/` with a JSON report beside it; `serve`
loads it instead of the original while the original's path, size and mtime match the report.

No llama_cpp import at module level: `alveare model show` and `serve`'s look-up only read reports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from appliance.hive.kernels import KernelCache, KernelSetting, choose_kernels, cpu_signature

if TYPE_CHECKING:
    from appliance.hive.quality import Measurement

CANDIDATES: tuple[str, ...] = ("q4_0", "q8_0")
# What serve tries by itself for the embedded model: Q8_0 holds Q4_1's weights almost exactly
# (+0.2% perplexity on the embedded model), while Q4_0 rounds them again onto a coarser grid (+17%,
# which the gate rejects), so trying it would only make the first start longer.
AUTO_CANDIDATES: tuple[str, ...] = ("q8_0",)
REPORT_SUFFIX = ".optimize.json"


class Speed(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens per second on this machine, each the median of a few timed runs."""

    prefill: float  # a prompt of 256 tokens in one batch
    decode_batch: float  # one step of 8 sequences, a token each
    decode_one: float  # one step of one sequence


class Gate(msgspec.Struct, frozen=True, kw_only=True):
    """What a copy must show to be kept. Measured on the embedded SmolLM2-135M (Q4_1): the Q8_0 copy
    costs +0.2% perplexity, the Q4_0 copy +17% (Q4_1 weights squeezed into a coarser 4-bit grid)."""

    # Perplexity on the fixed text at most this much above the original's (0.05: +5%).
    max_perplexity_increase: float = 0.05
    # Share of the original's greedy answer tokens that the copy also picks, given the same prefix.
    min_agreement: float = 0.90
    # Speed-up over the original (geometric mean of prefill, 8-row and 1-row decode) to count as faster;
    # the 5% is there so that noise alone does not swap the model.
    min_speedup: float = 1.05
    # And none of the three may fall below this share of the original's: on a 2-core Xeon with
    # AVX-512 the issue measured Q8_0 at 1.9x the prefill but 0.76x the 1-row step of Q4_1, a 1.14x
    # mean that would make every single-user answer slower. On the AMD EPYC here Q8_0's 1-row step
    # measures 0.90-0.98x (level at one client over HTTP, the prefill making up for it), so the
    # floor sits between the two rather than where noise could reject that copy. A Xeon of the
    # issue's class, safe kernels, measured 0.81x and kept the copy: 1.30x at 8 clients over HTTP,
    # 0.90-0.93x at one (README, Benchmarks, On an Intel Xeon).
    min_each: float = 0.80
    # The 1-row step's own floor where serve puts the original beside the copy (the solo lane,
    # --solo-model not off): a request that runs alone from its start then never decodes on the copy
    # (its one-row step under SOLO_BELOW the original's), so the copy's one-row step serves only a
    # request left alone by others that finished first, and the Xeon's 0.76-0.83x copy, which
    # wins every batched step, is kept. None: min_each.
    one_row_floor: float | None = None


# Where the copy's 1-row step is under this share of the original's, serve loads the original beside
# it for requests running alone (--solo-model auto; appliance/hive/solo_lane.py): below it the lane's
# gain pays for moving a request's cells twice (1.16x per lone request on the Xeon's 0.81x copy; the
# moves cost about 1% of a 48-token answer there), and a copy within 3%, about the measurement's
# spread, serves alone. The lane costs memory only while requests run alone (a busy server unloads
# it), and one client's tokens/s follows the one-row step, so a 0.90-0.97x copy (the AMD EPYC's
# Q8_0 measured 0.90-0.98x) takes the lane too.
SOLO_BELOW = 0.97
# The 1-row floor optimize keeps a copy by when the lane is on (Gate.one_row_floor).
SOLO_ONE_ROW_FLOOR = 0.70


def gate_for(solo_lane: bool) -> Gate:
    """The gate a copy is kept by, with or without the solo lane taking lone requests off it."""
    return Gate(one_row_floor=SOLO_ONE_ROW_FLOOR) if solo_lane else Gate()


class Source(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # real path
    size: int
    mtime: int
    description: str = ""


class Result(msgspec.Struct, kw_only=True):  # filled in as the run goes, hence not frozen
    """One model's measurements; for a candidate, also its verdict."""

    type: str  # "original", or the type a copy was requantised to
    description: str
    path: str
    size_bytes: int
    kernels: str  # "fast" or "safe" CPU kernels during the measurement
    perplexity: float
    speed: Speed
    perplexity_increase: float | None = None  # 0.02: +2%
    agreement: float | None = None  # teacher-forced greedy agreement with the original, 0-1
    exact_answers: int | None = None  # free-running greedy answers identical to the original's
    shared_prefix_mean: float | None = None  # tokens each answer shares with the original's, on average
    speedup: float | None = None
    ratios: dict[str, float] = {}  # per speed measurement, copy / original
    passed: bool = False  # the quality gate
    faster: bool = False
    reasons: list[str] = []


class Report(msgspec.Struct, kw_only=True):
    source: Source
    created_at: str
    cpu: str
    # The CPU's model name and flags (kernels.cpu_signature): a copy measured faster on one CPU is
    # not served on another. Empty in reports made before it was recorded.
    cpu_signature: str = ""
    llama_cpp_python: str
    threads: int
    gate: Gate
    text_tokens: int
    prompts: int
    answer_tokens: int
    original: Result
    candidates: list[Result]
    kept: str | None = None
    copy_path: str | None = None
    copy_size: int | None = None
    verdict: str = ""


# ---------------------------------------------------------------- the gate (pure)
SPEED_NAMES = {"prefill": "prefill", "decode_batch": "8-row decode", "decode_one": "1-row decode"}


def speed_ratios(original: Speed, copy: Speed) -> dict[str, float]:
    return {
        name: round(getattr(copy, name) / getattr(original, name), 3) if getattr(original, name) > 0 else 0.0
        for name in ("prefill", "decode_batch", "decode_one")
    }


def geometric_mean(values: Sequence[float]) -> float:
    if not values or min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def judge(
    *,
    original_perplexity: float,
    perplexity: float,
    agreement: float,
    ratios: dict[str, float],
    gate: Gate,
) -> tuple[bool, bool, float, list[str]]:
    """(passed the quality gate, faster, speed-up, reasons it is not kept)."""
    reasons = []
    increase = perplexity / original_perplexity - 1
    if not math.isfinite(perplexity) or increase > gate.max_perplexity_increase:
        reasons.append(f"perplexity {increase:+.1%} (at most {gate.max_perplexity_increase:+.0%})")
    if agreement < gate.min_agreement:
        reasons.append(f"greedy agreement {agreement:.0%} (at least {gate.min_agreement:.0%})")
    speedup = geometric_mean(list(ratios.values()))
    floors = {name: gate.min_each for name in ratios}
    if gate.one_row_floor is not None and "decode_one" in floors:
        floors["decode_one"] = gate.one_row_floor
    slower = {name: r for name, r in ratios.items() if r < floors[name]}
    faster = speedup >= gate.min_speedup and not slower
    if speedup < gate.min_speedup:
        reasons.append(f"speed {speedup:.2f}x the original's (at least {gate.min_speedup:.2f}x)")
    for name, r in slower.items():
        reasons.append(f"{SPEED_NAMES[name]} {r:.2f}x the original's (at least {floors[name]:.2f}x)")
    return not any("perplexity" in r or "agreement" in r for r in reasons), faster, speedup, reasons


def choose(candidates: Sequence[Result]) -> Result | None:
    """The fastest candidate that passed the gate and beats the original."""
    good = [c for c in candidates if c.passed and c.faster]
    return max(good, key=lambda c: c.speedup or 0.0) if good else None


def verdict(kept: Result | None, candidates: Sequence[Result]) -> str:
    if kept is not None:
        return (
            f"kept the {kept.type} copy: perplexity {kept.perplexity_increase:+.1%}, greedy agreement "
            f"{kept.agreement:.0%}, {kept.speedup:.2f}x the original's speed on this machine"
        )
    if not candidates:
        return "nothing to try: the model already has the type asked for"
    why = "; ".join(f"{c.type}: {', '.join(c.reasons)}" for c in candidates)
    return f"kept no copy ({why}); serve keeps loading the original"


# ---------------------------------------------------------------- files
def source_of(path: str) -> Source:
    st = os.stat(path)
    return Source(path=os.path.realpath(path), size=st.st_size, mtime=int(st.st_mtime))


def _stem(source: Source) -> str:
    key = hashlib.sha256(f"{source.path}\n{source.size}\n{source.mtime}".encode()).hexdigest()[:12]
    return f"{Path(source.path).stem}-{key}"


def report_path(models_dir: Path, source: Source) -> Path:
    return models_dir / (_stem(source) + REPORT_SUFFIX)


def copy_path(models_dir: Path, source: Source, kind: str) -> Path:
    return models_dir / f"{_stem(source)}.{kind}.gguf"


def read_report(path: Path) -> Report | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Report)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_report(path: Path, report: Report) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-")
    with os.fdopen(fd, "wb") as f:  # 0600, like the rest of the data dir
        f.write(msgspec.json.format(msgspec.json.encode(report), indent=1))
    os.replace(tmp, path)


def reports(models_dir: Path) -> list[Report]:
    found = [read_report(p) for p in sorted(models_dir.glob("*" + REPORT_SUFFIX))] if models_dir.is_dir() else []
    return [r for r in found if r is not None]


def copy_state(report: Report) -> str:
    """'in use' when serve would load the copy, else why not."""
    if report.kept is None or report.copy_path is None:
        return "no copy kept"
    if not made_on_this_cpu(report):
        return "measured on another CPU (run optimize again)"
    try:
        now = source_of(report.source.path)
    except OSError:
        return "the original is gone"
    if (now.size, now.mtime) != (report.source.size, report.source.mtime):
        return "the original changed since (run optimize again)"
    try:
        if os.path.getsize(report.copy_path) != report.copy_size:
            return "the copy changed since"
    except OSError:
        return "the copy is missing"
    return "in use"


def made_on_this_cpu(report: Report) -> bool:
    # Reports from before the full signature was recorded name the CPU model only.
    here = cpu_signature()
    return report.cpu_signature == here if report.cpu_signature else report.cpu == here.split(" | ")[0]


def report_for(model_path: str, models_dir: Path) -> Report | None:
    """The report stored for this model file as it is now (the real path, size and mtime it records
    are the file's), whatever it kept; None if there is none."""
    try:
        source = source_of(model_path)
    except OSError:
        return None
    report = read_report(report_path(models_dir, source))
    recorded = (report.source.path, report.source.size, report.source.mtime) if report else None
    return report if recorded == (source.path, source.size, source.mtime) else None


def measured_here(model_path: str, models_dir: Path) -> bool:
    """Whether this model file, as it is now, has a report made on this CPU, whatever it kept: a copy
    the gate rejected here is not worth measuring again at every start."""
    report = report_for(model_path, models_dir)
    return report is not None and made_on_this_cpu(report)


def optimized_copy(model_path: str, models_dir: Path) -> Report | None:
    """The report of a kept copy of this model file that is still valid: same real path, size and
    mtime as when it was made, measured on this CPU, and the copy there with its size. None otherwise."""
    report = report_for(model_path, models_dir)
    return report if report is not None and copy_state(report) == "in use" else None


# ---------------------------------------------------------------- the run
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
    from appliance.hive import quality
    from appliance.hive.llama import QUANT_TYPES, quantize, quiet_native_logs

    quiet_native_logs(False)
    prompts = quality.PROMPTS if prompts is None else prompts
    answer_tokens = quality.ANSWER_TOKENS if answer_tokens is None else answer_tokens
    source = source_of(model_path)
    models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache = KernelCache(kernel_cache)
    t0 = time.monotonic()

    def measured(path: str, reference: list[list[int]] | None) -> tuple[str, Measurement]:
        # The kernel check's verdict for this file (a child process the first time, then remembered):
        # a CPU whose fast kernels crash measures, and later serves, the safe ones.
        kernels = choose_kernels(cpu_kernels, path, cache=cache)
        progress(f"  CPU kernels: {kernels.mode} ({kernels.source})")
        return kernels.mode, quality.measure(
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
            prefixes = [quality.shared_prefix(a, b) for a, b in zip(m.answers, base.answers, strict=True)]
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
            speeds = quality.measure_speed(models, threads=threads, repeats=repeats)
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
    for old in models_dir.glob(f"{_stem(source)}.*.gguf"):
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
