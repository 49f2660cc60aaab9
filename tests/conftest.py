from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import live
import pg
from live import LiveServer, start_server

# The run's own cache dir, made at import (the servers' environment must name it before any starts)
# and removed when the process exits, however the run ended.
_RUN_CACHE = Path(tempfile.mkdtemp(prefix="alveare-test-run-"))
atexit.register(shutil.rmtree, _RUN_CACHE, ignore_errors=True)

# One CPU kernel verdict per model file for the whole run: every engine and server the tests start,
# in process or not, reads and writes this file instead of checking again in each fresh data dir.
# (tests/engine/test_kernels.py and tests/api/test_cpu_kernels.py give the check a fresh one.)
os.environ["ALVEARE_KERNEL_CACHE"] = str(_RUN_CACHE / "cpu-kernels.json")

# The servers run the quickstart's defaults, the optimised copy of the embedded model included: the
# first start on it measures and makes that copy in this models dir, which every server's data dir
# shares (live.start_server), so it is made once a run. tests/api/test_first_start_optimize.py makes
# its own on purpose.
os.environ.pop("ALVEARE_OPTIMIZED_MODEL", None)
live.SHARED_MODELS = _RUN_CACHE / "models"
live.SHARED_MODELS.mkdir(mode=0o700)

# Nor may they reach a server the developer has running on the default port (the README's
# `./packaging/run.sh serve` in another terminal): the admin CLI talks to the server on the
# configured port when one answers there, else to the data dir. This port stays bound, never
# listening, for the whole run, so nothing answers on it.
_NO_SERVER = socket.socket()
_NO_SERVER.bind(("127.0.0.1", 0))
os.environ["ALVEARE_PORT"] = str(_NO_SERVER.getsockname()[1])


class WebhookSink:
    """A tiny HTTP server in the test process that collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.httpd.shutdown()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookSink) -> Iterator[LiveServer]:
    """One real appliance on the embedded model for the whole session, posting usage alerts to `webhook`."""
    live = start_server(
        tmp_path_factory.mktemp("alveare-data"), "--timeout", "120", env={"ALVEARE_WEBHOOK_URL": webhook.url}
    )
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


# The tiers, by folder: `pytest -m unit` (or `./packaging/run.sh test unit`) runs one of them.
TIERS = {
    "unit": "unit",
    "engine": "engine",
    "api": "api",
    "e2e": "e2e",
    "tui": "e2e",
    "packaging": "packaging",
    "clients": "clients",
    "sdk": "clients",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
        tier = TIERS.get(folder)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test module belongs in a tier's folder: {sorted(TIERS)}")
        item.add_marker(tier)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.PgServer]:
    """A real PostgreSQL on loopback for the session (tests/pg.py), gone at the end."""
    server = pg.start_postgres()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_database(request: pytest.FixtureRequest) -> str | None:
    """Each back end in turn, for the store's contract tests: None (SQLite in the data dir) or the URL
    of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    server: pg.PgServer = request.getfixturevalue("postgres")
    return server.new_database()
