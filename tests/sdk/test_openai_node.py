"""The official openai Node SDK (npm) against the live server: the migration guide's promise for
JavaScript apps (tests/sdk/openai_node/parity.mjs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from live import LiveServer
from node_project import npm_installed

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent / "openai_node"
# The check() calls in parity.mjs and tools.mjs: a check that silently stopped running would be a lost test.
CHECKS = 16
TOOL_CHECKS = 9
RESPONSES_CHECKS = 5


@pytest.fixture(scope="module")
def installed() -> Path:
    return npm_installed(HERE, "the openai Node SDK check")


def run_script(installed: Path, server: LiveServer, api_key: str, script: str) -> list[str]:
    """The script's passed checks, after asserting none failed."""
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": api_key}
    result = subprocess.run(["node", script], cwd=installed, env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "FAILED" not in report, report
    return [line for line in report.splitlines() if line.startswith("ok ")]


def test_the_openai_node_sdk_against_the_live_server(installed: Path, server: LiveServer, api_key: str) -> None:
    passed = run_script(installed, server, api_key, "parity.mjs")
    assert len(passed) == CHECKS, passed


def test_function_calling_with_the_openai_node_sdk(installed: Path, server: LiveServer, api_key: str) -> None:
    """tools, tool_choice (auto, none, required, named), streamed and not, history, and the 400s."""
    passed = run_script(installed, server, api_key, "tools.mjs")
    assert len(passed) == TOOL_CHECKS, passed


def test_the_responses_api_with_the_openai_node_sdk(installed: Path, server: LiveServer, api_key: str) -> None:
    """responses.create and responses.stream, function tools, json_schema, and the stateless 400."""
    passed = run_script(installed, server, api_key, "responses.mjs")
    assert len(passed) == RESPONSES_CHECKS, passed
