#!/bin/bash
# Build llama.cpp's own llama-server (CPU only) from the llama.cpp vendored in the
# llama-cpp-python 0.3.36 sdist, under benchmarks/.work (git-ignored). Offline-safe:
# no curl, no OpenSSL, no prebuilt/npm web UI download.  ~25 min on 2 cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$HERE/.work"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
VER=0.3.36
mkdir -p "$WORK"
cd "$WORK"
[ -f sdist/llama_cpp_python-$VER.tar.gz ] || \
  "$PY" -m pip download --no-deps --no-binary :all: llama-cpp-python==$VER -d sdist
[ -d llama_cpp_python-$VER ] || tar xzf sdist/llama_cpp_python-$VER.tar.gz
SRC="$WORK/llama_cpp_python-$VER/vendor/llama.cpp"
B="$WORK/llama-build"
cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF -DGGML_METAL=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF
cmake --build "$B" --target llama-server -j"${JOBS:-2}"
ls -la "$B/bin/llama-server"
