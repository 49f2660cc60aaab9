from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live import LiveServer, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real appliance on the embedded model for the whole session."""
    live = start_server(tmp_path_factory.mktemp("alveare-data"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def api_key(server: LiveServer) -> str:
    return server.new_key("tests", plan="scale")


@pytest.fixture(scope="session")
def client(server: LiveServer, api_key: str):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0, timeout=120)
