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

# ggml-cuda links cuBLAS. Where the CUDA toolkit beside nvcc lacks it, use the cuBLAS that a
# Python package brought (e.g. PyTorch's nvidia-cublas): point CMake at it, and record its lib dir
# in BUILD_ROOT/cublas.path for LD_LIBRARY_PATH at run time.
EXTRA=""
CUDA_DIR="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
HAVE="$(ls "$CUDA_DIR"/include/cublas_v2.h /usr/local/cuda*/include/cublas_v2.h \
  /usr/local/cuda*/targets/*/include/cublas_v2.h /usr/include/cublas_v2.h 2>/dev/null | head -1 || true)"
echo "   nvcc: $(command -v nvcc); toolkit cuBLAS header: ${HAVE:-none}"
found() {  # files named like $1 anywhere on the machine (one scan, kept)
  [ -f "$ROOT/found.txt" ] || find / \( -path /proc -o -path /sys -o -path "$ROOT" \) -prune -o \( -name cublas_v2.h \
    -o -name 'libcublas.so*' -o -name 'libcublasLt.so*' -o -name 'libcuda.so*' \) -print 2>/dev/null >"$ROOT/found.txt"
  grep -E "/$1\$" "$ROOT/found.txt" | sort | head -1 || true
}
if [ -z "$HAVE" ]; then
  H="$(found 'cublas_v2\.h')"
  L="$(found 'libcublas\.so[.0-9]*')"
  LT="$(found 'libcublasLt\.so[.0-9]*')"
  echo "   no cuBLAS in $CUDA_DIR; using $H, $L, $LT"
  mkdir -p "$ROOT/cublas"
  ln -sf "$L" "$ROOT/cublas/libcublas.so"
  ln -sf "$LT" "$ROOT/cublas/libcublasLt.so"
  dirname "$L" >"$ROOT/cublas.path"
  INC="$(dirname "$H")"
  EXTRA="-DCMAKE_LIBRARY_PATH=$ROOT/cublas -DCUDA_cublas_LIBRARY=$ROOT/cublas/libcublas.so"
  EXTRA="$EXTRA -DCUDA_cublasLt_LIBRARY=$ROOT/cublas/libcublasLt.so -DCMAKE_INCLUDE_PATH=$INC"
  EXTRA="$EXTRA -DCMAKE_CXX_FLAGS=-I$INC -DCMAKE_CUDA_FLAGS=-I$INC"
fi

# ggml-cuda also links the driver library (libcuda.so); a toolkit without its stubs/ folder has none,
# so link the driver's own libcuda.so.1.
if [ -z "$(ls "$CUDA_DIR"/lib64/stubs/libcuda.so /usr/local/cuda*/lib64/stubs/libcuda.so \
  /usr/local/cuda*/targets/*/lib/stubs/libcuda.so 2>/dev/null | head -1)" ]; then
  D="$(found 'libcuda\.so[.0-9]*')"
  echo "   no libcuda.so stub in the toolkit; using $D"
  EXTRA="$EXTRA -DCUDA_cuda_driver_LIBRARY=$D"
fi

# The image's CUDA host compiler (/opt/gcc/bin/g++) links libstdc++ statically; without this flag
# libggml-cuda exports that copy and every model load crashes (appliance/engine/native/native_libs.py).
LINK="-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"
t0=$(date +%s)
echo "== llama-cpp-python wheel, CUDA arch $ARCH, $JOBS jobs"
CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH $LINK $EXTRA ${EXTRA_CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
  "$PY" -m pip wheel -v --no-deps --no-build-isolation -w "$ROOT/wheel" -C build-dir="$B" "$SRC" \
  >"$ROOT/wheel.log" 2>&1 || { tail -60 "$ROOT/wheel.log"; exit 1; }
t1=$(date +%s)
echo "   wheel in $((t1 - t0)) s: $(ls "$ROOT"/wheel/*.whl)"

[ -n "${NO_SERVER:-}" ] && exit 0
echo "== llama-server from the same build dir"
cmake -S "$SRC" -B "$B" -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAVA_BUILD=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$ROOT/server.log" 2>&1 \
  || { tail -40 "$ROOT/server.log"; exit 1; }
cmake --build "$B" --target llama-server -j"$JOBS" >>"$ROOT/server.log" 2>&1 || { tail -40 "$ROOT/server.log"; exit 1; }
t2=$(date +%s)
echo "   llama-server in $((t2 - t1)) s: $B/bin/llama-server"
grep -c "Building CUDA object" "$ROOT/server.log" | sed 's/^/   CUDA objects recompiled for llama-server: /' || true
