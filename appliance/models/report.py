"""The optimised copy's report: what was measured of the original and each copy, the gate it was
judged by, and where report and copy live in `<data dir>/models/`."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import msgspec

from appliance.engine.native.kernels import cpu_signature

REPORT_SUFFIX = ".optimize.json"


class Speed(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens per second on this machine, each the median of a few timed runs."""

    prefill: float  # a prompt of 256 tokens in one batch
    decode_batch: float  # one step of 8 sequences, a token each
    decode_one: float  # one step of one sequence


class Gate(msgspec.Struct, frozen=True, kw_only=True):
    """What a copy must show to be kept: quality within a margin that a copy holding the weights almost
    exactly passes and one rounding them onto a coarser grid fails, and speed that is faster overall
    without being slower at any one measurement (docs/decisions/005-optimised-copy-gate.md)."""

    # Perplexity on the fixed text at most this much above the original's (0.05: +5%).
    max_perplexity_increase: float = 0.05
    # Share of the original's greedy answer tokens that the copy also picks, given the same prefix.
    min_agreement: float = 0.90
    # Speed-up over the original (geometric mean of prefill, 8-row and 1-row decode) to count as faster;
    # the 5% is there so that noise alone does not swap the model.
    min_speedup: float = 1.05
    # And none of the three may fall below this share of the original's: a mean can hide a slower
    # 1-row step, which every single-user answer waits on. The floor sits below the copies that are
    # level at one client over HTTP (their faster prefill making up for it), so noise does not reject
    # them, and above those that would slow a single user down (docs/decisions/005-optimised-copy-gate.md).
    min_each: float = 0.80
    # The 1-row step's own floor where serve puts the original beside the copy (the solo lane,
    # --solo-model not off): a request that runs alone from its start then never decodes on the copy
    # (its one-row step under SOLO_BELOW the original's), so the copy's one-row step serves only a
    # request left alone by others that finished first, and a copy that wins every batched step but
    # loses the 1-row step is kept (docs/decisions/003-solo-lane.md). None: min_each.
    one_row_floor: float | None = None


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


def source_of(path: str) -> Source:
    st = os.stat(path)
    return Source(path=os.path.realpath(path), size=st.st_size, mtime=int(st.st_mtime))


def file_stem(source: Source) -> str:
    key = hashlib.sha256(f"{source.path}\n{source.size}\n{source.mtime}".encode()).hexdigest()[:12]
    return f"{Path(source.path).stem}-{key}"


def report_path(models_dir: Path, source: Source) -> Path:
    return models_dir / (file_stem(source) + REPORT_SUFFIX)


def copy_path(models_dir: Path, source: Source, kind: str) -> Path:
    return models_dir / f"{file_stem(source)}.{kind}.gguf"


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
