"""Idle CPU on the cores this process may run on, from the kernel's per-CPU counters.

The thread policy asks before it tries more threads: a step with a thread more than the idle
cores can hold waits at every barrier for a descheduled thread (seconds, where it takes
milliseconds on a quiet machine), and when a busy neighbour stops, the idle cores show it at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STAT = Path("/proc/stat")


class IdleCpu:
    """Idle cores (0.0 to the count of allowed CPUs), averaged between calls."""

    def __init__(self, stat: Path = STAT) -> None:
        self._stat = stat
        try:
            self._cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        except (AttributeError, OSError):  # no affinity call: every CPU the kernel lists
            self._cpus = None
        self._last: tuple[float, float] | None = None  # (monotonic s, idle s summed over the CPUs)
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        # The idle cores at the latest reading; None before the second call (or without /proc/stat).
        self.last: float | None = None

    @property
    def readable(self) -> bool:
        """Whether the kernel's counters can be read here (Linux's /proc/stat)."""
        return self._stat.is_file()

    def state(self) -> str:
        """The latest reading in a few words (the hive status)."""
        if not self.readable:
            return f"no {self._stat} here: tries of more threads are not held back"
        if self.last is None:
            return "not read yet (read while decode steps use fewer threads than the most)"
        return f"{self.last:.1f} idle cores at the latest reading"

    def _idle_seconds(self) -> float | None:
        try:
            lines = self._stat.read_text().splitlines()
        except OSError:
            return None
        total = 0
        seen = False
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or (self._cpus is not None and name not in self._cpus):
                continue
            fields = rest.split()
            if len(fields) < 5:
                continue
            total += int(fields[3]) + int(fields[4])  # idle + iowait
            seen = True
        return total / self._hz if seen else None

    def cores(self) -> float | None:
        """Idle cores since the previous call; None on the first call or without /proc/stat."""
        now, idle = time.monotonic(), self._idle_seconds()
        if idle is None:
            return None
        last, self._last = self._last, (now, idle)
        if last is None or now - last[0] <= 0:
            return None
        self.last = max(0.0, (idle - last[1]) / (now - last[0]))
        return self.last
