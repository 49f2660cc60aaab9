#!/bin/bash
# Build, on a CUDA machine, llama-cpp-python 0.3.36 with CUDA (the wheel the appliance runs on)
# and llama.cpp's own llama-server from the same vendored llama.cpp, compiling ggml-cuda ONCE:
#   1. `pip wheel` of the sdist with CMAKE_ARGS="-DGGML_CUDA=on ..." into a kept CMake build dir;
#   2. the same build dir reconfigured with the llama.cpp tools on, and only the llama-server target
#      built: libllama/libggml*/ggml-cuda are reused as they are (same compile commands), only the
#      server, its common code and mtmd compile.
# Offline: no build isolation (needs scikit-build-core, cmake, ninja and nvcc installed), no curl,
# no OpenSSL, no web UI download.
#
#   benchmarks/gpu_build.sh SDIST_DIR BUILD_ROOT [CUDA_ARCH]
#
# SDIST_DIR: the unpacked llama_cpp_python-0.3.36 sdist. Leaves BUILD_ROOT/wheel/*.whl,
# BUILD_ROOT/lcpb/bin/llama-server (+ the shared libraries beside it) and BUILD_ROOT/*.log.
set -euo pipefail
SRC="$(cd "$1" && pwd)"
ROOT="$2"
ARCH="${3:-90}"
JOBS="${JOBS:-$(nproc)}"
PY="${PYTHON:-python3}"
mkdir -p "$ROOT"
ROOT="$(cd "$ROOT" && pwd)"
B="$ROOT/lcpb"

t0=$(date +%s)
echo "== llama-cpp-python wheel, CUDA arch $ARCH, $JOBS jobs"
CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
  "$PY" -m pip wheel -v --no-deps --no-build-isolation -w "$ROOT/wheel" -C build-dir="$B" "$SRC" \
  >"$ROOT/wheel.log" 2>&1 || { tail -60 "$ROOT/wheel.log"; exit 1; }
t1=$(date +%s)
echo "   wheel in $((t1 - t0)) s: $(ls "$ROOT"/wheel/*.whl)"

echo "== llama-server from the same build dir"
cmake -S "$SRC" -B "$B" -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAVA_BUILD=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$ROOT/server.log" 2>&1 \
  || { tail -40 "$ROOT/server.log"; exit 1; }
cmake --build "$B" --target llama-server -j"$JOBS" >>"$ROOT/server.log" 2>&1 || { tail -40 "$ROOT/server.log"; exit 1; }
t2=$(date +%s)
echo "   llama-server in $((t2 - t1)) s: $B/bin/llama-server"
grep -c "Building CUDA object" "$ROOT/server.log" | sed 's/^/   CUDA objects recompiled for llama-server: /' || true
