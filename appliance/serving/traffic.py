"""Metered requests as they finish, for the hive status and metrics."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from appliance.core import protocol as p

HISTORY_BUCKET_S = 10
HISTORY_BUCKETS = 60  # ten minutes


class Traffic:
    """Metered requests as they finish: a ring of 10-second buckets over the last ten minutes,
    the last minute's finish times, and errors by status since start. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # [bucket start, tokens, requests, errors]; a slot whose start is stale is reused.
        self._ring = [[-1, 0, 0, 0] for _ in range(HISTORY_BUCKETS)]
        self._recent: deque[float] = deque()
        self._errors: dict[int, int] = {}
        self.requests_total = 0

    def record(self, status: int, tokens: int) -> None:
        now = self._clock()
        start = int(now // HISTORY_BUCKET_S) * HISTORY_BUCKET_S
        with self._lock:
            bucket = self._ring[(start // HISTORY_BUCKET_S) % HISTORY_BUCKETS]
            if bucket[0] != start:
                bucket[:] = [start, 0, 0, 0]
            bucket[1] += tokens
            bucket[2] += 1
            if status >= 400:
                bucket[3] += 1
                self._errors[status] = self._errors.get(status, 0) + 1
            self.requests_total += 1
            self._recent.append(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()

    def requests_per_minute(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._recent)

    def errors_by_status(self) -> dict[str, int]:
        with self._lock:
            return {str(k): v for k, v in sorted(self._errors.items())}

    def history(self) -> list[p.HiveSample]:
        """The last HISTORY_BUCKETS buckets, oldest first, ending with the current one (zeros where idle)."""
        current = int(self._clock() // HISTORY_BUCKET_S) * HISTORY_BUCKET_S
        out = []
        with self._lock:
            for i in range(HISTORY_BUCKETS - 1, -1, -1):
                start = current - i * HISTORY_BUCKET_S
                b = self._ring[(start // HISTORY_BUCKET_S) % HISTORY_BUCKETS]
                out.append(
                    p.HiveSample(t=start, tokens=b[1], requests=b[2], errors=b[3])
                    if b[0] == start
                    else p.HiveSample(t=start, tokens=0, requests=0, errors=0)
                )
        return out
