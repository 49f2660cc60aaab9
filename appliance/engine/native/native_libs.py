"""A check of llama-cpp-python's native libraries before a model is loaded with them.

A compiler that links libstdc++ statically into every shared library (the CUDA image of our GPU
machines has one: its CUDAHOSTCXX, /opt/gcc/bin/g++, does) builds a libggml-cuda.so that carries
its own libstdc++ and exports it. libllama then binds part of its C++ runtime to that copy and
part to the system's, and loading any model segfaults in the tokenizer's std::regex code
(benchmarks/results/2026-11-25-h100-gpu-first-run/gpu-h100.md). `-Wl,--exclude-libs,ALL` at link time keeps such a copy
private; a build made without it is refused here with what to do, not left to crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from pathlib import Path

log = logging.getLogger("alveare.hive")

# typeinfo for std::istream: defined by libstdc++ itself, never by code that only uses it.
LIBSTDCXX_SYMBOL = "_ZTISi"
# What `import llama_cpp` loads (libllama and what it links; libmtmd only on demand).
LOADED_LIBRARIES = ("libllama.so", "libggml.so", "libggml-base.so", "libggml-cpu.so", "libggml-cuda.so")
# The flags a CUDA build needs on such a compiler (docs/install.md, "GPU (CUDA)"; packaging/run.sh adds them).
LINKER_FLAGS = "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"
CUDA_CMAKE_ARGS = f"-DGGML_CUDA=on {LINKER_FLAGS}"


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _dladdr() -> ctypes._CFuncPtr | None:
    try:
        fn = ctypes.CDLL(None).dladdr  # the process's own symbols: libc's since glibc 2.34
    except AttributeError:
        # An older glibc keeps it in libdl. Only then: find_library runs ldconfig (milliseconds).
        path = ctypes.util.find_library("dl")
        try:
            fn = ctypes.CDLL(path).dladdr if path else None
        except (AttributeError, OSError):
            fn = None
        if fn is None:
            return None
    fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    fn.restype = ctypes.c_int
    return fn


def exports_libstdcxx(library: Path) -> bool:
    """True when `library` itself, not one of its dependencies, defines and exports libstdc++."""
    dladdr = _dladdr()
    if dladdr is None:
        return False
    try:
        symbol = getattr(ctypes.CDLL(str(library)), LIBSTDCXX_SYMBOL)
    except (AttributeError, OSError):  # not exported anywhere in its scope, or not loadable here
        return False
    info = _DlInfo()
    if not dladdr(ctypes.cast(symbol, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return False
    return Path(info.dli_fname.decode()).resolve() == library.resolve()


def check_native_libraries(lib_dir: Path) -> None:
    """Refuse a CUDA backend that exports its own libstdc++; warn about any other library that does."""
    exporting = sorted(
        name for name in LOADED_LIBRARIES if (lib_dir / name).exists() and exports_libstdcxx(lib_dir / name)
    )
    if "libggml-cuda.so" in exporting:
        raise RuntimeError(
            f"this llama-cpp-python build cannot load a model: {lib_dir / 'libggml-cuda.so'} carries its own "
            "libstdc++ and exports it (its compiler links libstdc++ statically), so loading would crash; "
            f'rebuild it with CMAKE_ARGS="{CUDA_CMAKE_ARGS}" (docs/install.md, GPU (CUDA))'
        )
    if exporting:
        log.warning(
            "llama.cpp libraries that export their own libstdc++: %s; if loading a model crashes, rebuild "
            "llama-cpp-python with %s in CMAKE_ARGS",
            ", ".join(exporting),
            LINKER_FLAGS,
        )
