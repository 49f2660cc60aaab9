"""The warm-up before the first request: two decodes of one token in every slot. The first pages
the weights in and sizes llama.cpp's buffers (llama-server warms up too); the second, timed, is a
full step's time, so admission can judge a burst that arrives before any of its own steps ran."""

from __future__ import annotations

import logging
import time

from appliance.engine.native.llama import Batch, Context, Model

log = logging.getLogger("alveare.hive")


def full_step_s(model: Model, ctx: Context, batch: Batch, slots: int) -> float | None:
    """Seconds of one decode step of `slots` rows, the cache left empty; None if it failed."""
    token = max(0, model.bos)
    rows = min(slots, batch.capacity)
    elapsed = 0.0
    try:
        for _ in range(2):
            batch.clear()
            for seq in range(rows):
                batch.add(token, 0, seq, True)
            t0 = time.perf_counter()
            rc = ctx.decode(batch)
            elapsed = time.perf_counter() - t0
            ctx.clear()
            if rc != 0:
                return None
    except Exception:  # a failed warm-up only leaves admission to time the first steps itself
        log.exception("warm-up step failed")
        ctx.clear()
        return None
    finally:
        batch.clear()
    return elapsed
