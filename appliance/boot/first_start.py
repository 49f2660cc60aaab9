"""The one-off step of a first start on a CPU: make the optimised copy of the embedded model, in a
child process (optimize_child.py), while the CPU is quiet enough to measure it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.core.settings import Settings

log = logging.getLogger("appliance.serve")  # serve's logger: these lines are part of its start-up

# Measure only with at least this share of the threads' cores idle: speeds taken on a contended CPU
# would be wrong, and a contended fixed thread count can take many minutes.
QUIET_SHARE = 0.75


def idle_cores(wait_s: float = 1.0) -> float | None:
    """Idle cores over the next `wait_s` seconds (None where /proc/stat cannot tell)."""
    from appliance.engine.tuning.idle_cpu import IdleCpu

    idle = IdleCpu()
    idle.cores()
    time.sleep(wait_s)
    return idle.cores()


def optimize_embedded(settings: Settings, model_path: str, idle: Callable[[], float | None] = idle_cores) -> str | None:
    """Requantise the embedded model to Q8_0 and keep the copy only if it passes the quality gate and
    is faster here. Returns the verdict, or None where nothing was recorded: a busy CPU (the next
    start tries again) or a failure; either is logged and the original served."""
    from appliance.engine.native.llama import default_threads

    threads = settings.threads or default_threads()
    free = idle()
    if free is not None and free < QUIET_SHARE * threads:
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
        [sys.executable, "-m", "appliance.boot.optimize_child", json.dumps(job)],
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
