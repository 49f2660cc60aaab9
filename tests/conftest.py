from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live import LiveServer, start_server

# Every server the tests start, in process or not, serves the embedded model as shipped: a first start
# would otherwise spend a minute or two making its optimised copy (tests/engine/test_optimize.py and
# tests/api/test_first_start_optimize.py cover that step on purpose).
os.environ["ALVEARE_OPTIMIZED_MODEL"] = "off"

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
