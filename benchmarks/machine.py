"""What the benchmark scripts share: the CPU line every table starts with (and the GPU when there
is one), a free loopback port, and an `alveare serve` on a fresh data dir."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

# CPU flags that decide which llama.cpp kernels run (and whether AMX is in play), in the order a
# table lists them.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16", "f16c", "fma")


def cpu_count() -> int:
    """The cores this process may run on (its affinity), which is what the servers get."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_line(cpuinfo: str, cores: int) -> str:
    """'<model name> (<cores> cores; <kernel flags>)' from the text of /proc/cpuinfo: the flags
    llama.cpp's kernels depend on, in KERNEL_FLAGS order, or 'none of ...' when it has none."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's entry
            fields[key.strip()] = value.strip()
    present = set(fields.get("flags", "").split())
    flags = " ".join(f for f in KERNEL_FLAGS if f in present) or "none of " + " ".join(KERNEL_FLAGS)
    return f"{fields.get('model name') or platform.machine()} ({cores} cores; {flags})"


def cpu_name() -> str:
    """The CPU's model name, core count and the flags that decide llama.cpp's kernels, for every
    benchmark table (machines differ: never quote a figure without it)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()} ({cpu_count()} cores)"
    return cpu_line(info, cpu_count())


def print_table(conditions: str, columns: list[str], rows: list[str]) -> None:
    """An in-process probe's report: the CPU line, what was run, and a Markdown table of `rows`
    (each already "| a | b |")."""
    print(f"CPU: {cpu_name()}")
    print(conditions)
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    print("\n".join(rows))


def gpu_name() -> str | None:
    """The GPUs nvidia-smi sees (name, memory, driver), or None without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    return "; ".join(f"{g.split(',')[0]} ({', '.join(x.strip() for x in g.split(',')[1:])})" for g in gpus) or None


def machine_slug(gpu: str | None = None) -> str:
    """A short name for the machine, for a results folder (`<date>-<machine>-<question>/`): the GPU's
    model (h200) when one is given, else the CPU's family (epyc, xeon), else its first word."""
    name = (gpu or cpu_name()).lower()
    for known in ("h100", "h200", "a100", "l40s", "l4", "epyc", "xeon", "ryzen", "core"):
        if re.search(rf"\b{known}\b", name):
            return known
    words = re.findall(r"[a-z0-9]+", name)
    return words[0] if words else "machine"


def mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 0)
    except OSError:
        pass
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_key_in(line: str) -> str | None:
    """The first start's admin key from a line of serve's output: printed (on a terminal, or by an
    older revision), or in the data dir's 0600 file whose path the line gives when it is not."""
    if line.strip().startswith("alv_"):
        return line.strip()
    if line.startswith("Admin API key written to "):
        path = line.removeprefix("Admin API key written to ").split(" (mode", 1)[0]
        return Path(path).read_text(encoding="utf-8").strip()
    return None


def start(
    port: int, data: str, extra: list[str] | None = None, *, tree: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """`alveare serve` on a fresh data dir; `tree`: the checkout whose code serves (another revision's,
    its modules first on the path), this one's by default."""
    env = {**os.environ, "ALVEARE_DATA_DIR": data, "PYTHONUNBUFFERED": "1", **(env or {})}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--port", str(port), "--timeout", "300", *(extra or [])],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        key = admin_key_in(line) or key
        if line.startswith("Listening on"):
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("model_loaded"):
                return proc, key
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready")
