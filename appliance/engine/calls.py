"""Work handed to the scheduler thread from others, run between its steps: what touches the model
or its context while steps run (loading an adapter) must not run beside a decode."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class CallQueue:
    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._calls: list[tuple[Callable[[], Any], Future]] = []
        self.closed = False

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue `fn` and wake the scheduler; its result or exception comes back in the future."""
        future: Future = Future()
        with self._cond:
            if self.closed:
                future.set_exception(RuntimeError("the engine is stopping"))
                return future
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    @property
    def pending(self) -> bool:
        """Whether any wait (read under the scheduler's lock)."""
        return bool(self._calls)

    def run(self) -> None:
        """On the scheduler thread: run every call queued so far."""
        with self._cond:
            calls, self._calls = self._calls, []
        for fn, future in calls:
            try:
                future.set_result(fn())
            except Exception as exc:
                future.set_exception(exc)
