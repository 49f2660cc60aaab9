"""Which CPU kernels the engine may use: llama.cpp's fast "extra buffer types" (weight repacking,
AMX on Intel Xeons) or the plain ones.

llama.cpp built with GGML_NATIVE picks the AMX buffer type on a CPU that reports AMX, and on some
virtual machines (AWS m7i, GCP C4 class) the first AMX matmul kills the process with SIGSEGV. That
cannot be caught in-process, so the first start for a given model, llama.cpp build and CPU decodes a
short prompt in a child process (`python -m appliance.engine.native.kernel_check`) with the fast kernels and
again with the safe ones. If the child dies or the two disagree, the engine loads with the safe
buffer types (what `llama-server --no-repack` does). The verdict is remembered in the user's cache
dir (Settings.kernel_cache_path), keyed by all three, so every data dir on the machine shares it.

No llama_cpp import here: this runs before the model is loaded, and tests drive it with fake children.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, Literal, TypeVar

import msgspec

log = logging.getLogger("alveare.hive")

KernelSetting = Literal["auto", "fast", "safe"]
# How long the child may take: two loads of the model and two short decodes.
CHECK_TIMEOUT_S = 180.0
# kernel_check's exit status when llama.cpp cannot load the model at all (kept in step with it).
UNLOADABLE = 3


class KernelChoice(msgspec.Struct, frozen=True, kw_only=True):
    # "fast": llama.cpp's extra buffer types (repacked weights, AMX where the CPU has it); "safe": without.
    mode: Literal["fast", "safe"]
    # "check" (decided by the child just now), "cache" (an earlier check on this model, build and CPU),
    # "setting" (forced with --cpu-kernels) or "gpu" (every layer offloaded, nothing to check).
    source: Literal["check", "cache", "setting", "gpu"]
    reason: str = ""


class CheckResult(msgspec.Struct, frozen=True):
    ok: bool
    reason: str
    # False when the check says nothing about the kernels (the model file itself won't load).
    conclusive: bool = True


def cpu_signature(cpuinfo: str | None = None) -> str:
    """The CPU's model name and feature flags, which decide which kernels llama.cpp picks."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux: the platform's name is the best there is
            import platform

            return f"{platform.machine()} {platform.processor()}"
    name = flags = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
    return f"{name} | {flags}"


def build_signature() -> str:
    """llama-cpp-python's version and its native library's size and time: a rebuild changes it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return "llama_cpp missing"
    package = Path(spec.origin).parent
    parts = []
    for lib in sorted((package / "lib").glob("*")) if (package / "lib").is_dir() else []:
        st = lib.stat()
        parts.append(f"{lib.name}:{st.st_size}:{int(st.st_mtime)}")
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on sys.path
        version = "unknown"
    return f"{version} {' '.join(parts)}"


# Part of every verdict's key: a check that exercises more (2: the output matrix batched, every
# prompt row compared) makes remembered verdicts of the older one count for nothing.
CHECK_VERSION = 2


def check_key(model_path: str, cpu: str, build: str) -> str:
    st = os.stat(model_path)
    text = f"{os.path.realpath(model_path)}\n{st.st_size}\n{int(st.st_mtime)}\n{build}\n{cpu}\n{CHECK_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def child_command(model_path: str) -> list[str]:
    return [sys.executable, "-m", "appliance.engine.native.kernel_check", model_path]


def run_check(command: Sequence[str], timeout_s: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Run the check in a child process; any way it can fail is a reason to stay safe."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"the check did not finish in {timeout_s:.0f} s")
    except OSError as exc:
        return CheckResult(False, f"the check could not start: {exc}")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return CheckResult(False, f"the fast CPU kernels crashed the check ({name})")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode == UNLOADABLE and last.startswith("unloadable"):
        return CheckResult(False, last, conclusive=False)
    if done.returncode != 0 or not last.startswith("ok"):
        detail = last or (done.stderr.strip().splitlines() or ["no output"])[-1]
        return CheckResult(False, f"the check failed (exit {done.returncode}): {detail[:200]}")
    return CheckResult(True, last)


V = TypeVar("V", bound=msgspec.Struct)


class VerdictCache(Generic[V]):
    """Verdicts by key, in one small JSON file in the user's cache dir (0600, written atomically): the
    kernel check's here, flash attention's (tuning/attention.py) in a file beside it."""

    def __init__(self, path: Path | None, kind: type[V]) -> None:
        self.path = path
        self.kind = kind

    def get(self, key: str) -> V | None:
        if self.path is None:
            return None
        try:
            entries = json.loads(self.path.read_text())
            return msgspec.convert(entries[key], self.kind)
        except (OSError, ValueError, KeyError, TypeError, msgspec.ValidationError):
            return None

    def put(self, key: str, verdict: V) -> None:
        if self.path is None:
            return
        try:
            entries = json.loads(self.path.read_text())
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError):
            entries = {}
        entries[key] = msgspec.to_builtins(verdict) | {"checked_at": int(time.time())}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".verdicts-")
            with os.fdopen(fd, "w") as f:  # mkstemp files are 0600
                json.dump(entries, f, indent=1)
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache dir only costs a measurement on the next start
            log.warning("could not remember a verdict in %s: %s", self.path, exc)


def KernelCache(path: Path | None) -> VerdictCache[KernelChoice]:
    """The kernel check's verdicts."""
    return VerdictCache(path, KernelChoice)


def choose_kernels(
    setting: KernelSetting,
    model_path: str,
    *,
    cache: VerdictCache[KernelChoice],
    gpu_offload_all: bool = False,
    cpu: Callable[[], str] = cpu_signature,
    build: Callable[[], str] = build_signature,
    check: Callable[[str], CheckResult] = lambda path: run_check(child_command(path)),
) -> KernelChoice:
    if setting == "fast":
        return KernelChoice(mode="fast", source="setting", reason="--cpu-kernels fast")
    if setting == "safe":
        return KernelChoice(mode="safe", source="setting", reason="--cpu-kernels safe")
    if gpu_offload_all:
        # Weights live on the GPU; CPU repacking is not used, so there is nothing to check.
        return KernelChoice(mode="fast", source="gpu", reason="every layer is offloaded to the GPU")
    key = check_key(model_path, cpu(), build())
    known = cache.get(key)
    if known is not None:
        return KernelChoice(mode=known.mode, source="cache", reason=known.reason)
    t0 = time.monotonic()
    result = check(model_path)
    if not result.conclusive:
        # The engine's own load of this file fails next and says why; nothing to remember.
        return KernelChoice(mode="safe", source="check", reason=result.reason)
    if result.ok:
        choice = KernelChoice(mode="fast", source="check", reason="the fast CPU kernels decoded correctly")
        log.info("CPU kernel check passed in %.1f s: using the fast kernels", time.monotonic() - t0)
    else:
        choice = KernelChoice(mode="safe", source="check", reason=result.reason)
        log.warning(
            "%s; serving with llama.cpp's safe CPU kernels instead (slower prefill). "
            "Remembered for this model, llama.cpp build and CPU; --cpu-kernels fast|safe overrides it.",
            result.reason,
        )
    cache.put(key, choice)
    return choice
