"""The client matrix, Node side: the Vercel AI SDK (ai 5 with @ai-sdk/openai-compatible) in its
documented usage against the live server (tests/clients/ai_sdk/clients.mjs). ai 6 and later need
Node 22; this machine's Node is 20, where ai 5 is the current line. The official openai Node SDK is
tests/sdk/test_openai_node.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from live import LiveServer
from node_project import npm_installed

pytestmark = [pytest.mark.slow, pytest.mark.clients]

HERE = Path(__file__).resolve().parent / "ai_sdk"
# The check() calls in clients.mjs: a check that silently stopped running would be a lost test.
CHECKS = 9


@pytest.fixture(scope="module")
def installed() -> Path:
    return npm_installed(HERE, "the Vercel AI SDK check")


def test_the_vercel_ai_sdk_against_the_live_server(installed: Path, server: LiveServer, api_key: str) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": api_key}
    result = subprocess.run(
        ["node", "clients.mjs"], cwd=installed, env=env, capture_output=True, text=True, timeout=600
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "FAILED" not in report, report
    passed = [line for line in report.splitlines() if line.startswith("ok ")]
    assert len(passed) == CHECKS, passed
