"""A Node project of the tests (package.json and its lockfile) with its packages installed: `npm ci`
once, again when the lockfile changes; the test is skipped, saying so, without node and npm."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def npm_installed(folder: Path, what: str) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"{what} needs node and npm on PATH; not found")
    marker = folder / "node_modules" / ".package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < (folder / "package-lock.json").stat().st_mtime:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return folder
