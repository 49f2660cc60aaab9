"""The check that refuses a llama.cpp CUDA backend carrying its own exported libstdc++ (the build
that segfaulted in every model load on the GPU machines' image), on real shared libraries: one
linked with -static-libstdc++ as that image's compiler does, one linked the usual way."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.engine.native.llama import library_dir
from appliance.engine.native.native_libs import CUDA_CMAKE_ARGS, check_native_libraries, exports_libstdcxx

SOURCE = """#include <sstream>
#include <string>
extern "C" int digits(int v) { std::ostringstream s; s << v; return (int)s.str().size(); }
"""


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    d = tmp_path_factory.mktemp("libs")
    (d / "f.cpp").write_text(SOURCE)
    built = {}
    for name, flags in (("static", ["-static-libstdc++"]), ("shared", [])):
        out = d / f"{name}.so"
        r = subprocess.run([cxx, "-shared", "-fPIC", *flags, "-o", str(out), str(d / "f.cpp")], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"{name} link failed here: {r.stderr.decode()[-200:]}")
        built[name] = out
    return built


def _folder(tmp_path: Path, lib: Path, name: str) -> Path:
    shutil.copy(lib, tmp_path / name)
    return tmp_path


def test_a_library_with_its_own_libstdcxx_is_told_from_one_that_links_it(libs) -> None:
    assert exports_libstdcxx(libs["static"])
    assert not exports_libstdcxx(libs["shared"])


def test_a_cuda_backend_with_its_own_libstdcxx_is_refused_with_the_fix(libs, tmp_path) -> None:
    with pytest.raises(RuntimeError) as err:
        check_native_libraries(_folder(tmp_path, libs["static"], "libggml-cuda.so"))
    assert "libggml-cuda.so carries its own libstdc++" in str(err.value)
    assert CUDA_CMAKE_ARGS in str(err.value) and "--exclude-libs,ALL" in CUDA_CMAKE_ARGS


def test_another_library_with_its_own_libstdcxx_is_only_reported(libs, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="alveare.hive"):
        check_native_libraries(_folder(tmp_path, libs["static"], "libggml-base.so"))
    assert "libggml-base.so" in caplog.text and "--exclude-libs,ALL" in caplog.text


def test_usual_libraries_and_this_build_pass(libs, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="alveare.hive"):
        check_native_libraries(_folder(tmp_path, libs["shared"], "libggml-cuda.so"))
        check_native_libraries(library_dir())  # the llama-cpp-python these tests run on
    assert caplog.text == ""
