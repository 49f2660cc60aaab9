"""This process's memory as Linux reports it, for the tests that watch RSS."""

from __future__ import annotations

from pathlib import Path


def resident_kb(field: str = "VmRSS") -> int:
    """A kB field of /proc/self/status: VmRSS now, VmHWM the peak since start (or since clear_refs 5)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0
