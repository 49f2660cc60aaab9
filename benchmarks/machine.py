"""What the benchmark scripts share: the CPU line every table starts with, a free loopback port,
and an `alveare serve` on a fresh data dir."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

# CPU flags that decide which llama.cpp kernels run (and whether AMX is in play).
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile")


def cpu_name() -> str:
    """The CPU's model name, core count and the flags that decide llama.cpp's kernels, for every
    benchmark table (machines differ: never quote a figure without it)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = " ".join(f for f in fields.get("flags", "").split() if f in KERNEL_FLAGS)
    return f"{fields.get('model name', platform.machine())} ({os.cpu_count()} cores; {flags})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, data: str, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "ALVEARE_DATA_DIR": data, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--port", str(port), "--timeout", "300", *(extra or [])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().startswith("alv_"):
            key = line.strip()
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
