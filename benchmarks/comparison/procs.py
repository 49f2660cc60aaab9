"""A server's process tree seen through /proc: its CPU seconds and resident memory (sampled in a
thread), the machine's busy time, and stopping a process group."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _tree(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def stat_cpu_s(stat: Path) -> float:
    """utime+stime in seconds from a /proc stat file (a process's, or a thread's under task/); 0 if gone."""
    try:
        text = stat.read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """utime+stime of pid and its live descendants, in seconds."""
    return sum(stat_cpu_s(Path(f"/proc/{p}/stat")) for p in _tree(pid))


def machine_busy_s() -> float:
    """CPU seconds spent busy on the whole machine since boot (all cores)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tree_rss_kb(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or another /proc status field in kB, VmHWM the peak) of pid plus all its descendants,
    in kB (0 when the process is gone)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


class RssSampler:
    """Samples the server's tree RSS in a thread; keeps the overall and a resettable peak."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.window_peak_kb = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = tree_rss_kb(self.pid)
            self.peak_kb = max(self.peak_kb, kb)
            self.window_peak_kb = max(self.window_peak_kb, kb)
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._t.start()
        return self

    def reset_window(self) -> None:
        self.window_peak_kb = tree_rss_kb(self.pid)

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait up to `grace` s, then SIGKILL it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if proc.poll() is None and pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if pgid is not None:  # also the group's leftovers (children that outlived the leader)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
