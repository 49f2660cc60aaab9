"""@alveare/sdk: `npm ci` and `npm run build` (CommonJS, ESM and types), then the built package, through both
entry points, against the live server with node (sdk/typescript/test/live.mjs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from live import LiveServer

pytestmark = pytest.mark.slow

TS = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["npm", *args], cwd=TS, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"npm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def built() -> Path:
    node, npm_path = shutil.which("node"), shutil.which("npm")
    if node is None or npm_path is None:
        pytest.skip("the TypeScript SDK needs node (18 or newer) and npm on PATH; not found")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if major is None or int(major.group(1)) < 18:
        pytest.skip(f"the TypeScript SDK needs node 18 or newer, found {version or 'none'}")
    # npm ci only when the lock file changed since the last install (it is the slow part).
    installed = TS / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (TS / "package-lock.json").stat().st_mtime:
        npm("ci", "--no-audit", "--no-fund")
    npm("run", "build")
    for path in ("esm/index.js", "esm/index.d.ts", "cjs/index.js", "cjs/index.d.ts", "cjs/package.json"):
        assert (TS / "dist" / path).is_file(), path
    return TS


def test_the_built_package_against_the_live_server(built: Path, server: LiveServer, api_key: str) -> None:
    env = {
        **os.environ,
        "ALVEARE_BASE_URL": server.base_url,
        "ALVEARE_API_KEY": api_key,
        "ALVEARE_ADMIN_KEY": server.admin_key,
        "ALVEARE_SOLO_KEY": server.new_key("sdk-ts-solo", plan="solo"),
    }
    result = subprocess.run(["node", "test/live.mjs"], cwd=built, env=env, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "FAILED" not in report, report
    assert report.count("ok ") == 13, report
