"""Which file serve loads: the kept copy while its report still matches the original, this CPU and the copy."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.models.report import Report, made_on_this_cpu, report_for, source_of


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
