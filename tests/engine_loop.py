"""A HiveEngine on the real model, driven from synchronous tests: each engine runs on an event loop
of its own (its generations deliver to the loop that started it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

from appliance.engine.engine import HiveEngine
from appliance.engine.interface import EngineConfig

T = TypeVar("T")


def kernel_cache() -> str | None:
    """The run's CPU kernel verdicts (tests/conftest.py), so an engine started here checks a model once a run."""
    return os.environ.get("ALVEARE_KERNEL_CACHE")


def start_engine(config: EngineConfig) -> HiveEngine:
    if config.kernel_cache_path is None:
        config = msgspec.structs.replace(config, kernel_cache_path=kernel_cache())
    loop = asyncio.new_event_loop()
    eng = HiveEngine(config)
    loop.run_until_complete(eng.start())
    assert eng.loaded, eng.status().load_error
    eng.test_loop = loop  # type: ignore[attr-defined]
    return eng


def on_loop(eng: HiveEngine, coro: Coroutine[Any, Any, T]) -> T:
    return eng.test_loop.run_until_complete(coro)  # type: ignore[attr-defined]


def stop_engine(eng: HiveEngine) -> None:
    on_loop(eng, eng.stop())
    eng.test_loop.close()  # type: ignore[attr-defined]
