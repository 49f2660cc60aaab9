"""`pip install alveare` as a user gets it: the wheel built from this repository, installed with no extras
into a fresh venv, brings only httpx and msgspec, builds nothing, and its SDK talks to the live server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from live import LiveServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What the wheel is built from; the rest of the repository (tests, benchmarks, the TypeScript SDK) is not in it.
SOURCES = ["pyproject.toml", "README.md", "alveare", "appliance", "tui"]

SCRIPT = """
import asyncio, importlib.util, sys

import alveare

# Nothing of the server or the TUI came with it.
for name in ("llama_cpp", "litestar", "uvicorn", "textual", "sqlite_utils"):
    assert importlib.util.find_spec(name) is None, name + " is importable"
assert "site-packages" in alveare.__file__, alveare.__file__

client = alveare.Client(api_key=sys.argv[1], base_url=sys.argv[2])
response = client.infer(specialist="summarise", prompt="Summarise: bees share one hive.", max_tokens=8)
assert response.result and response.tokens_used > 0
try:
    client.infer(specialist="astrology", prompt="x")
except alveare.NotFoundError as exc:
    assert exc.code == "model_not_found"
else:
    raise AssertionError("no NotFoundError")

async def main():
    async with alveare.AsyncClient(api_key=sys.argv[1], base_url=sys.argv[2]) as aclient:
        return [p async for p in aclient.chat_stream("chat", "Say hi.", max_tokens=4)]

assert asyncio.run(main())
print("sdk ok:", response.result)
"""


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy, so the build leaves no build/ or egg-info in the working tree.
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = run(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", out, src, cwd=src)
    # The license is an SPDX string: no setuptools deprecation warning on every set-up.
    output = build.stdout + build.stderr
    assert "project.license" not in output and "SetuptoolsDeprecationWarning" not in output
    (found,) = out.glob("alveare-*.whl")
    return found


def test_the_sdk_alone_in_a_fresh_venv(wheel: Path, server: LiveServer, api_key: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp_path)
    installed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    names = {line.split("==")[0] for line in installed.split()}
    assert {"alveare", "httpx", "msgspec"} <= names
    assert not names & {"llama-cpp-python", "litestar", "uvicorn", "textual", "sqlite-utils"}, names

    script = tmp_path / "use_sdk.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    # Run from tmp_path so the working tree's alveare/ is not on sys.path: this is the installed wheel.
    result = run(python, script, api_key, server.url, cwd=tmp_path, timeout=300)
    assert "sdk ok:" in result.stdout
