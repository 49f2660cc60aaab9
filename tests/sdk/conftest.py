from __future__ import annotations

from collections.abc import Iterator

import pytest
from live import LiveServer

import alveare


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The SDK reads ALVEARE_* and ~/.config/alveare; the tests say what they mean, never the machine's."""
    for var in ("ALVEARE_API_KEY", "ALVEARE_BASE_URL", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALVEARE_CONFIG", str(tmp_path_factory.mktemp("config") / "config.toml"))


@pytest.fixture(scope="session")
def solo_key(server: LiveServer) -> str:
    """A key on the solo plan: 20 requests a minute. One test uses it up, so it has it to itself."""
    return server.new_key("sdk-solo", plan="solo")


@pytest.fixture
def sdk(server: LiveServer, api_key: str) -> Iterator[alveare.Client]:
    with alveare.Client(api_key=api_key, base_url=server.url, timeout=120) as client:
        yield client
