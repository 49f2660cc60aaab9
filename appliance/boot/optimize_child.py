"""The first start's optimising step, run by `serve` in a child process (first_start.optimize_embedded).

The measurements load the model and its copy and make contexts for perplexity and speed; a process
keeps much of that memory after, for as long as it then serves, so the serving process never runs
them itself (docs/decisions/007-host-memory-costs.md).

  python -m appliance.boot.optimize_child '{"model": ..., "models": ..., "threads": ..., ...}'

Logs serve's `optimize:` lines to stderr, prints the verdict on stdout; exit status 1 when the
step failed (logged here), anything else non-zero when the process itself died."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from appliance.core.settings import LOG_FORMAT

log = logging.getLogger("appliance.serve")  # its lines are part of serve's start-up


def run(job: dict) -> int:
    from appliance.models.gate import gate_for
    from appliance.models.optimize import AUTO_CANDIDATES, optimize

    try:
        report = optimize(
            job["model"],
            Path(job["models"]),
            kinds=AUTO_CANDIDATES,
            threads=job["threads"],
            cpu_kernels=job["cpu_kernels"],
            kernel_cache=Path(job["kernel_cache"]) if job.get("kernel_cache") else None,
            gate=gate_for(bool(job.get("solo_lane"))),
            progress=lambda line: log.info("optimize: %s", line.strip()),
        )
    except Exception as exc:  # an optional step: whatever failed, the original still serves
        log.warning("could not make an optimised copy of %s (%s); serving the original", job["model"], exc)
        return 1
    print(report.verdict)  # its progress lines have logged it
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    sys.exit(run(json.loads(sys.argv[1])))
