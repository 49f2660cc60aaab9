"""Whether the llama.cpp processes of a run (llama-server, the contention hog) may use llama.cpp's
fast CPU kernels (weight repacking, AMX on Xeons) on this machine.

On some virtualised Xeons with AMX the first AMX matmul kills a llama.cpp process with SIGSEGV:
llama-server dies during its warm-up, before it is ready. Alveare checks this itself (its
`--cpu-kernels auto`); for llama-server `--cpu-kernels auto` here starts it once on the model and,
if a signal kills it before it answers a request, runs every llama-server with `--no-repack` (the
setting a user on such a host needs) and says so in the report.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from machine import free_port

from comparison.procs import kill_group


@dataclass(frozen=True)
class Verdict:
    setting: str  # --cpu-kernels: auto, fast or safe
    safe: bool  # llama-server runs with --no-repack, the hog without extra buffer types
    reason: str


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def probe_llama_server(binary: str, model: Path, threads: int, timeout: float = 120.0) -> tuple[bool, str]:
    """(the fast kernels work, what happened): start llama-server with its defaults on `model` and
    send it one short completion (the warm-up and that request run batched matmuls)."""
    port = free_port()
    command = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "512"]
    command += ["-t", str(threads), "--no-webui"]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    code = proc.returncode
                    how = signal_name(code) if code < 0 else f"exit status {code}"
                    return False, f"llama-server with its repacked (fast) CPU kernels died at start ({how})"
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        body = {"prompt": "The quick brown fox jumps over the lazy dog. " * 8, "n_predict": 4}
                        client.post(f"http://127.0.0.1:{port}/completion", json=body)
                        time.sleep(0.2)
                        if proc.poll() is None:
                            return True, "llama-server's repacked (fast) CPU kernels served a request"
                        continue  # died on the request: the branch above says how
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        return True, f"llama-server was not ready within {timeout:.0f} s (the probe assumes its defaults work)"
    finally:
        kill_group(proc, grace=5)


def decide(setting: str, binary: str, model: Path, threads: int, needed: bool) -> Verdict:
    """The verdict for --cpu-kernels: forced, or (auto) probed when a llama-server runs at all."""
    if setting != "auto":
        return Verdict(setting, setting == "safe", "set with --cpu-kernels")
    if not needed or not Path(binary).exists():
        return Verdict(setting, False, "not probed (no llama-server in this run)")
    fast, reason = probe_llama_server(binary, model, threads)
    return Verdict(setting, not fast, reason)
