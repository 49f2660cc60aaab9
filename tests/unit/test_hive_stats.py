"""The step history is appended by the scheduler thread while the event loop reads rates from it."""

from __future__ import annotations

import threading
import time

from appliance.engine.stats import Stats


def test_rates_can_be_read_while_the_scheduler_records_steps() -> None:
    stats = Stats()
    errors: list[BaseException] = []
    stop = time.monotonic() + 0.5

    def writer() -> None:
        while time.monotonic() < stop:
            stats.record_step(8, 32)

    def reader() -> None:
        try:
            while time.monotonic() < stop:
                stats.rates()
        except BaseException as exc:  # "deque mutated during iteration" without the lock
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    generated, prompt = stats.rates()
    assert generated > 0 and prompt == 4 * generated
