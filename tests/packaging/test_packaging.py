"""packaging/: the systemd unit (systemd-analyze verify), the shell scripts (shellcheck), the
Containerfiles (hadolint, and the build options that make them safe on any host), and that the
install section of docs/operations.md uses all of them. The images themselves are not built here (no
container daemon); these checks are static."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SCRIPTS = [
    PACKAGING / "run.sh",
    PACKAGING / "install.sh",
    ROOT / ".ci" / "run",
    ROOT / "benchmarks" / "build_llama_server.sh",
]
UNIT = PACKAGING / "alveare.service"
CONTAINERFILES = {"cpu": PACKAGING / "Containerfile", "cuda": PACKAGING / "Containerfile.cuda"}
# What every CUDA build of llama-cpp-python links with (appliance/engine/native/native_libs.py says why).
LINKER = "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"


def tool(name: str) -> str:
    """A linter from the test extra (its wheel puts the binary beside this Python), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' brings it, or the system package)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- shell scripts
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    result = run(tool("shellcheck"), "--severity=style", str(script))
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_script_usage_and_refusals() -> None:
    script = str(PACKAGING / "install.sh")
    shown = run("bash", script, "--help")
    assert shown.returncode == 0 and "--cuda" in shown.stdout and "--data-dir" in shown.stdout
    wrong = run("bash", script, "--frobnicate")
    assert wrong.returncode == 2 and "unknown option --frobnicate" in wrong.stderr
    relative = run("bash", script, "--prefix", "opt/alveare")
    assert relative.returncode == 1 and "absolute path" in relative.stderr
    assert (PACKAGING / "install.sh").stat().st_mode & 0o111


def host_docs() -> list[str]:
    """What install.sh copies beside the venv for the README's links (its HOST_DOCS)."""
    match = re.search(r'^HOST_DOCS="([^"]*)"$', (PACKAGING / "install.sh").read_text(), re.MULTILINE)
    assert match, "install.sh names the docs it installs in HOST_DOCS"
    return match.group(1).split()


def local_links(page: Path) -> list[Path]:
    """The files a Markdown page links to or includes (mkdocs snippets, from the repository's root)
    within the repository: no addresses, no anchors on the page itself."""
    text = page.read_text()
    links = [
        (page.parent / target.split("#")[0]).resolve()
        for target in re.findall(r"\]\(([^)\s]+)\)", text)
        if not target.startswith("#") and ":" not in target
    ]
    return links + [ROOT / path for path in re.findall(r'^--8<-- "([^"]+)"$', text, re.MULTILINE)]


def test_the_installed_tree_has_what_the_readme_links_to() -> None:
    """install.sh puts README.md in PREFIX with HOST_DOCS beside it: every page the README links to,
    and every file those pages link to or include, must be in HOST_DOCS (and not the site's build hook)."""
    docs = host_docs()
    assert "README.md" in docs
    script = (PACKAGING / "install.sh").read_text()
    assert "for doc in $HOST_DOCS; do" in script and 'cp -R "$SRC/$doc" "$PREFIX/$doc"' in script

    def installed(path: Path) -> bool:
        relative = path.relative_to(ROOT)
        return relative.parts[:2] != ("docs", "_hooks") and any(
            relative == Path(doc) or Path(doc) in relative.parents for doc in docs
        )

    pages, seen, missing = [ROOT / "README.md"], set(), []
    while pages:
        page = pages.pop()
        if page in seen:
            continue
        seen.add(page)
        for target in local_links(page):
            if not (target.is_file() and installed(target)):
                missing.append(f"{page.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
            elif target.suffix == ".md":
                pages.append(target)
    assert missing == []
    assert ROOT / "benchmarks" / "README.md" in seen  # included by docs/benchmarks.md: the walk follows pages


# ---------------------------------------------------------------- systemd unit
def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_unit_is_hardened() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["User"] == ["alveare"] and s["Group"] == ["alveare"]
    assert s["ProtectSystem"] == ["strict"] and s["NoNewPrivileges"] == ["yes"]
    assert s["Restart"] == ["on-failure"]
    # The one writable path is the data dir, which is also where the app is told to keep its data.
    assert s["StateDirectory"] == ["alveare"] and "ReadWritePaths" not in s
    assert "ALVEARE_DATA_DIR=/var/lib/alveare" in s["Environment"]
    assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"] and s["CapabilityBoundingSet"] == [""]
    assert s["ExecStart"] == ["/opt/alveare/venv/bin/alveare serve"]


def cuda_dropin() -> str:
    text = (PACKAGING / "install.sh").read_text()
    match = re.search(r'cat > "\$dropin/cuda.conf" <<\'CONF\'\n(.*?)\nCONF\n', text, re.S)
    assert match, "install.sh writes the CUDA drop-in"
    return match.group(1)


@pytest.mark.parametrize("with_cuda", [False, True], ids=["unit", "unit+cuda-drop-in"])
def test_systemd_analyze_verify(tmp_path: Path, with_cuda: bool) -> None:
    analyze = tool("systemd-analyze")
    # As install.sh installs it: paths under a prefix (verify checks that ExecStart is executable).
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    stub = prefix / "venv" / "bin" / "alveare"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = UNIT.read_text().replace("/opt/alveare", str(prefix))
    if with_cuda:
        text = text.replace("\n[Install]", "\n" + cuda_dropin().replace("[Service]\n", "") + "\n\n[Install]")
    unit = tmp_path / "alveare.service"
    unit.write_text(text)
    result = run(analyze, "verify", "--man=no", str(unit))
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if re.search(r"unknown|invalid|failed|not executable|ignoring|deprecated|error", line, re.I)
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# ---------------------------------------------------------------- containers
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_containerfiles_pass_hadolint(kind: str) -> None:
    result = run(
        tool("hadolint"), "--no-color", "--config", str(PACKAGING / "hadolint.yaml"), str(CONTAINERFILES[kind])
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_llama_cpp_is_built_to_run_on_any_x86_64(kind: str) -> None:
    text = CONTAINERFILES[kind].read_text()
    env = " ".join(args for word, args in instructions(CONTAINERFILES[kind]) if word == "ENV")
    cmake = re.search(r'CMAKE_ARGS="([^"]*)"', env)
    assert cmake, "CMAKE_ARGS is set for the llama-cpp-python build"
    flags = cmake.group(1).split()
    # Runtime CPU dispatch, never the build machine's -march=native.
    assert {"-DGGML_NATIVE=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"} <= set(flags)
    assert any(f.startswith("-DGGML_BACKEND_DIR=") for f in flags)
    assert "GGML_NATIVE=ON" not in text
    if kind == "cuda":
        assert "-DGGML_CUDA=ON" in flags and any(f.startswith("-DCMAKE_CUDA_ARCHITECTURES=") for f in flags)
    # Built from source with those flags, not a wheel from elsewhere.
    assert "--no-binary llama-cpp-python" in text


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_the_image_runs_the_server_unprivileged_on_a_volume(kind: str) -> None:
    steps = final_stage(CONTAINERFILES[kind])
    words = [w for w, _ in steps]
    user = [a for w, a in steps if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "ALVEARE_DATA_DIR=/var/lib/alveare" in env and "ALVEARE_HOST=0.0.0.0" in env
    assert ("VOLUME", '["/var/lib/alveare"]') in steps and ("EXPOSE", "8080") in steps
    assert "HEALTHCHECK" in words and "/health" in dict(steps)["HEALTHCHECK"]
    assert dict(steps)["ENTRYPOINT"] == '["alveare"]' and dict(steps)["CMD"] == '["serve"]'


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_what_the_containerfiles_copy_and_install_exists(kind: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for word, args in instructions(CONTAINERFILES[kind]):
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{CONTAINERFILES[kind].name} copies {source}, which is gone"
        for extra in re.findall(r'"\.\[([a-z,]+)\]"', args):
            assert set(extra.split(",")) <= set(extras)


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_the_containerfiles_copy_what_the_package_links_to(kind: str) -> None:
    # appliance/specialists.toml is a link to the repository's specialists.toml: an image that copies
    # appliance/ without it ships a package with no built-in specialists (found building the image).
    copied = [
        source
        for word, args in instructions(CONTAINERFILES[kind])
        if word == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    for source in copied:
        for path in [ROOT / source, *(ROOT / source).rglob("*")]:
            if path.is_symlink() and "node_modules" not in path.parts:
                target = path.resolve().relative_to(ROOT)
                assert target.parts[0] in copied, f"{path.relative_to(ROOT)} links to {target}, not copied"


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_the_image_serves_both_sdks(kind: str) -> None:
    """GET /sdk/typescript hands out the tarball appliance/core/sdk_packages.py looks for beside the venv
    (found missing from both images): a Node stage packs sdk/typescript, the final stage copies it
    there, and the build checks that the server finds it and can pack the wheel GET /sdk/python sends."""
    from appliance.core import sdk_packages

    steps = instructions(CONTAINERFILES[kind])
    start = steps.index(("FROM", "${NODE_IMAGE} AS sdk"))
    stage = steps[start + 1 : next(i for i in range(start + 1, len(steps)) if steps[i][0] == "FROM")]
    copied = {Path(source).name for word, args in stage if word == "COPY" for source in args.split()[:-1]}
    # What `npm ci`, `npm run build` (its scripts and both tsconfigs) and `npm pack` read.
    assert {"package.json", "package-lock.json", "tsconfig.json", "tsconfig.cjs.json", "scripts", "src"} <= copied
    build = " ".join(args for word, args in stage if word == "RUN")
    assert all(step in build for step in ("npm ci", "npm run build", "npm pack --pack-destination /out"))
    final = final_stage(CONTAINERFILES[kind])
    venv = re.search(r"PATH=(\S+)/bin:", dict(final)["ENV"])
    assert venv, "the final stage puts the venv on PATH"
    [copy] = [args for word, args in final if word == "COPY" and args.startswith("--from=sdk ")]
    assert copy.split()[1:] == ["/out/", f"{sdk_packages.tarball_path(venv.group(1)).parent}/"]
    assert any("read_tarball()" in args and "build_wheel()" in args for word, args in final if word == "RUN")


@pytest.mark.parametrize("kind", CONTAINERFILES)
def test_llama_cpp_is_compiled_in_a_layer_before_the_code(kind: str) -> None:
    # A code change must not recompile llama.cpp (an hour for every CPU variant), and the layer
    # builds the version pyproject.toml pins.
    steps = instructions(CONTAINERFILES[kind])
    pin = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
        if d.startswith("llama-cpp-python")
    )
    assert ("ARG", "LLAMA_CPP_PYTHON=" + pin.split("==")[1]) in steps
    build = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "llama-cpp-python==" in a)
    first_copy = next(i for i, (w, a) in enumerate(steps) if w == "COPY" and not a.startswith("--from"))
    assert build < first_copy


# ---------------------------------------------------------------- docs
def test_the_docs_install_section_uses_every_piece() -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    section = page.split("## Install as a service", 1)[1].split("\n## ", 1)[0]
    for piece in ("packaging/install.sh", "packaging/alveare.service", "packaging/Containerfile", "Containerfile.cuda"):
        assert piece in section, piece
    assert "not built" in section  # said plainly: the images were not built in this repository's CI


def test_every_cuda_build_keeps_a_static_libstdcxx_private() -> None:
    # appliance/engine/native/native_libs.py: without the flag, a compiler that links libstdc++ statically
    # makes a libggml-cuda.so that exports it, and every model load crashes.
    from appliance.engine.native.native_libs import CUDA_CMAKE_ARGS

    flag = next(f for f in CUDA_CMAKE_ARGS.split() if f.startswith("-DCMAKE_SHARED_LINKER_FLAGS="))
    assert flag == LINKER
    for path in (PACKAGING / "install.sh", CONTAINERFILES["cuda"], ROOT / "docs" / "install.md", PACKAGING / "run.sh"):
        assert flag in path.read_text(), path.name


@pytest.mark.parametrize(
    ("given", "built_with"),
    [
        ("-DGGML_CUDA=on", f"-DGGML_CUDA=on {LINKER}"),
        ("-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90", f"-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 {LINKER}"),
        ("-DGGML_CUDA=on -DCMAKE_SHARED_LINKER_FLAGS=-Wl,-z,now",) * 2,  # the caller's own linker flags stay
        ("-DGGML_NATIVE=ON", "-DGGML_NATIVE=ON"),
        ("", ""),
    ],
)
def test_run_sh_adds_the_linker_flag_to_a_cuda_build_only(given: str, built_with: str) -> None:
    # The case block run.sh runs before pip builds llama-cpp-python, run as it is.
    text = (PACKAGING / "run.sh").read_text()
    block = re.search(r'^\s*case "\$\{CMAKE_ARGS:-\}" in\n.*?^\s*esac\n', text, re.S | re.M)
    assert block, "run.sh adjusts CMAKE_ARGS in one case block"
    out = subprocess.run(
        ["bash", "-c", block.group(0) + 'printf %s "${CMAKE_ARGS:-}"'],
        env={"CMAKE_ARGS": given, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == built_with


FAKE_PIP = """#!/bin/sh
echo "Collecting numpy"
echo "  Downloading numpy-2.0.whl (10 MB)"
echo "  Building wheel for llama-cpp-python (pyproject.toml): started"
echo "  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done'"
echo "Installing collected packages: numpy, llama-cpp-python, alveare"
echo "ERROR: pip's own error" >&2
exit "${FAKE_RC:-0}"
"""


@pytest.mark.parametrize("rc", [0, 3])
def test_run_sh_install_shows_pips_stages_and_keeps_its_exit_status(tmp_path: Path, rc: int) -> None:
    # The first install compiles llama.cpp for minutes: run.sh says so up front and shows the stages.
    text = (PACKAGING / "run.sh").read_text()
    assert "compiles llama.cpp from source" in text
    functions = re.search(r"^pip_stages\(\) \{\n.*?^pip_install\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert functions, "run.sh has pip_stages and pip_install"
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(FAKE_PIP)
    python.chmod(0o755)
    script = f"set -euo pipefail\nVENV={tmp_path}\n{functions.group(0)}install_start=$(date +%s)\npip_install -e .\n"
    out = subprocess.run(
        ["bash", "-c", script],
        env={"FAKE_RC": str(rc), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == rc
    # Each stage line ends with the seconds since the install began (0 or 1 here, on a busy machine).
    lines = [re.sub(r"\((\d+) s\)$", "(N s)", line) for line in out.stdout.splitlines()]
    assert lines == [
        "    Building wheel for llama-cpp-python (pyproject.toml): started (N s)",
        "    Building wheel for llama-cpp-python (pyproject.toml): finished with status 'done' (N s)",
        "    installing the packages (N s)",
    ]
    assert out.stderr == "ERROR: pip's own error\n"


def test_the_haproxy_configuration_is_valid() -> None:
    """packaging/haproxy/alveare.cfg as HAProxy itself reads it (`haproxy -c`), with its variables set."""
    haproxy = shutil.which("haproxy")
    assert haproxy, "HAProxy is not installed; ./packaging/run.sh test installs it (the haproxy package)"
    env = {"ALVEARE_LB_BIND": "127.0.0.1:8080", **{f"ALVEARE_NODE{i}": f"10.0.0.{i}:8080" for i in (1, 2, 3)}}
    config = PACKAGING / "haproxy" / "alveare.cfg"
    checked = subprocess.run([haproxy, "-c", "-f", str(config)], env=env, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_nginx_configuration_is_valid(tmp_path: Path) -> None:
    """packaging/nginx/alveare.conf as nginx itself reads it (`nginx -t`), included in an http block."""
    from nginx_site import nginx_binary, nginx_config

    main = nginx_config(tmp_path)
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
