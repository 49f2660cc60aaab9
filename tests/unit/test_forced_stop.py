"""A second Ctrl+C while the server stops: uvicorn cancels what still runs, and each cancellation it
logs is one line, never a traceback (appliance.boot.server.ForcedStopFilter); other records pass."""

from __future__ import annotations

import asyncio
import logging

from appliance.boot.server import ForcedStopFilter


def record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, (), info)


def test_cancellations_become_one_line_and_other_errors_pass() -> None:
    f = ForcedStopFilter()
    cut = record("Exception in ASGI application", asyncio.CancelledError())
    assert f.filter(cut) and cut.exc_info is None and "forced to stop" in cut.getMessage()
    text = "Traceback (most recent call last):\n  File ...\nasyncio.exceptions.CancelledError: Cancelled via scope\n"
    lifespan = record(text)
    assert f.filter(lifespan) and lifespan.getMessage().startswith("forced to stop")
    other = record("Exception in ASGI application", ValueError("boom"))
    assert f.filter(other) and other.exc_info is not None and other.getMessage() == "Exception in ASGI application"
