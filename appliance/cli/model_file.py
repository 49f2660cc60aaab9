"""Which model file `serve` loads: the copy `alveare model optimize` kept for the model while it is
valid for this file and CPU, else the file itself; and the one-off step of a first start on a CPU
that makes that copy of the embedded model (appliance/models/optimize.py does the work)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.core.settings import Settings
    from appliance.models.report import Report

log = logging.getLogger("appliance.serve")  # serve's logger: these lines are part of its start-up


def runs_on_gpu(settings: Settings) -> bool:
    from appliance.engine.native.llama import supports_gpu_offload

    return settings.gpu == "auto" and supports_gpu_offload()


def optimize_first(settings: Settings, model_path: str, embedded_path: str | None) -> bool:
    """Whether serve makes the optimised copy before loading: the embedded model, on the CPU, with
    --optimized-model auto, and no report yet on this file from this CPU (kept or not, so a copy the
    gate rejected is not measured again at every start). A model the operator brought is optimised
    only when asked (`alveare model optimize`): on a large model that takes long."""
    from appliance.models.select import measured_here

    if settings.optimized_model != "auto" or embedded_path is None:
        return False
    if Path(model_path).resolve() != Path(embedded_path).resolve() or runs_on_gpu(settings):
        return False
    return not measured_here(model_path, settings.models_path)


def idle_cores(wait_s: float = 1.0) -> float | None:
    """Idle cores over the next `wait_s` seconds (None where /proc/stat cannot tell)."""
    from appliance.engine.tuning.idle_cpu import IdleCpu

    idle = IdleCpu()
    idle.cores()
    time.sleep(wait_s)
    return idle.cores()


def optimize_embedded(settings: Settings, model_path: str, idle: Callable[[], float | None] = idle_cores) -> str | None:
    """The one-off step of a first start on a CPU (see optimize_first): requantise the embedded model
    to Q8_0 and keep the copy only if it passes the quality gate and is faster here. Returns the
    verdict, or None where nothing was recorded: a busy CPU (its speeds would be wrong, and a
    contended fixed thread count can take many minutes; the next start tries again) or a failure;
    either is logged and the original served."""
    from appliance.engine.native.llama import default_threads

    threads = settings.threads or default_threads()
    free = idle()
    # A quarter of the cores busy elsewhere: 1.5 of 2 idle cores is quiet enough, 1 is not.
    if free is not None and free < 0.75 * threads:
        log.warning(
            "not making the optimised copy of the embedded model on this start: the CPU is busy (%.1f of %d cores "
            "idle), so its speed cannot be measured; serving the original. The next start tries again, or run "
            "`alveare model optimize` when the machine is quiet",
            free,
            threads,
        )
        return None
    log.info(
        "first start on this CPU: making a faster copy of the embedded model, once (about a minute on 2 cores; "
        "--optimized-model off skips it, `alveare model show` prints the result)"
    )
    job = {
        "model": model_path,
        "models": str(settings.models_path),
        "threads": threads,
        "cpu_kernels": settings.cpu_kernels,
        "kernel_cache": str(settings.kernel_cache_path) if settings.kernel_cache_path else None,
        "solo_lane": settings.solo_model != "off",
    }
    # In a child: what the measurements take stays out of the serving process (optimize_child.py).
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli.optimize_child", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    verdict = done.stdout.strip().splitlines()[-1:]
    if done.returncode == 0 and verdict:
        return verdict[0]
    if done.returncode != 1:  # 1: the child logged why
        log.warning(
            "could not make an optimised copy of %s (the optimising process exited with status %s); "
            "serving the original",
            model_path,
            done.returncode,
        )
    return None


def copy_unused_because(settings: Settings) -> str | None:
    """Why serve, with these settings, loads the original even where a valid optimised copy exists
    (served_model's rule, which `model show` reports too), or None."""
    if settings.optimized_model == "off":
        return "--optimized-model off"
    if runs_on_gpu(settings):
        # The copy won on this CPU's kernels; on a GPU every layer runs elsewhere, where it was never measured.
        return "every layer runs on the GPU (--gpu off serves it on the CPU)"
    return None


def served_copy(settings: Settings, model_path: str) -> Report | None:
    """The report of the copy `alveare model optimize` kept for `model_path`, where serve loads that
    copy (it is still valid and --optimized-model is auto); None where serve loads the file itself."""
    from appliance.models.select import optimized_copy

    if settings.optimized_model == "off":
        return None  # not even looked for
    report = optimized_copy(model_path, settings.models_path)
    if report is None or report.copy_path is None:
        return None
    unused = copy_unused_because(settings)
    if unused is not None:
        log.info("serving %s, not its optimised copy: %s", model_path, unused)
        return None
    log.info(
        "serving the optimised %s copy %s of %s (%s); --optimized-model off serves the original",
        report.kept,
        report.copy_path,
        model_path,
        report.verdict.removeprefix(f"kept the {report.kept} copy: "),
    )
    return report


def file_to_load(model_path: str, copy: Report | None) -> str:
    """The file serve loads for `model_path`: the copy whose report served_copy gave, else the file itself."""
    return copy.copy_path if copy is not None and copy.copy_path else model_path


def served_model(settings: Settings, model_path: str) -> str:
    """The file to load for `model_path`: its valid optimised copy (served_copy), else the file itself."""
    return file_to_load(model_path, served_copy(settings, model_path))


def solo_model(settings: Settings, model_path: str, copy: Report | None) -> str | None:
    """The file a request running alone decodes on (--solo-model), or None; `copy`: the report of the
    copy serve loads for `model_path` (served_copy), None where it loads the original."""
    from appliance.engine.tuning.solo_lane import SOLO_BELOW

    if settings.solo_model == "off":
        return None
    if settings.solo_model != "auto":
        return settings.solo_model  # beside whichever file is served
    if copy is None:
        return None  # no copy served: the original decodes every step already
    kept = next((c for c in copy.candidates if c.type == copy.kept), None)
    one_row = kept.ratios.get("decode_one") if kept else None
    if one_row is None or one_row >= SOLO_BELOW:
        return None
    log.info(
        "a request running alone decodes on %s: the copy's one-row step measured %.2fx the original's here "
        "(--solo-model off: the copy serves every step)",
        model_path,
        one_row,
    )
    return model_path
