"""/schema fetches nothing from the internet: its page is plain HTML made from the schema, Litestar's
CDN-loaded viewers are gone, and whether it needs a key follows --schema-auth (by default: not on
loopback, a key beyond it). tests/api/test_tls_serve.py checks the default on a live server."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.core.settings import load_settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

# Every URL Litestar's schema router answered before (its viewers), and the two it answers now.
SCHEMA_PAGES = [
    "/schema",
    "/schema/openapi.json",
    "/schema/redoc",
    "/schema/swagger",
    "/schema/elements",
    "/schema/rapidoc",
    "/schema/oauth2-redirect.html",
    "/schema/openapi.yaml",
]
URL = re.compile(rb"(?i)\b(?:https?:)?//([a-z0-9.\-\[\]:]+)")


def outside_hosts(body: bytes) -> set[str]:
    """Hosts other than this one that a page names in an absolute or scheme-relative URL."""
    hosts = {h.decode() for h in URL.findall(body)}
    return {h for h in hosts if h.split(":")[0] not in ("127.0.0.1", "localhost", "testserver")}


def app_client(tmp_path: Path, **values: object) -> Iterator[tuple[TestClient, str]]:
    store = Store(tmp_path)
    store.create_account("acme", "solo")
    key = store.create_key("acme").key
    settings = load_settings({"data_dir": str(tmp_path), **values}, environ={})
    app = create_app(settings, engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key
    store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    yield from app_client(tmp_path)


def test_no_schema_page_names_an_outside_host(api) -> None:
    client, _ = api
    for path in SCHEMA_PAGES:
        r = client.get(path)
        assert r.status_code in (200, 404), path
        assert outside_hosts(r.content) == set(), path
    # The viewers that loaded scripts from CDNs are not served at all.
    for viewer in ("redoc", "swagger", "elements", "rapidoc"):
        assert client.get(f"/schema/{viewer}").status_code == 404


def test_the_page_lists_every_operation_and_links_the_json(api) -> None:
    client, _ = api
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "default-src 'none'" in html and "<script" not in html and "<link" not in html
    assert '<a href="/schema/openapi.json">' in html
    schema = client.get("/schema/openapi.json").json()
    assert not outside_hosts(client.get("/schema/openapi.json").content)
    for path, item in schema["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                assert f"<td class=m>{method.upper()}</td><td><code>{path}</code></td>" in html, (method, path)
    assert "<td>ChatCompletionRequest</td><td>ChatCompletion</td>" in html


@pytest.mark.parametrize(
    ("host", "schema_auth", "needs_key"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("0.0.0.0", "auto", True),
        ("192.0.2.7", "auto", True),
        ("127.0.0.1", "on", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_schema_auth_follows_the_setting_and_the_bind(tmp_path: Path, host: str, schema_auth: str, needs_key: bool):
    for client, key in app_client(tmp_path, host=host, schema_auth=schema_auth):
        for path in ("/schema", "/schema/openapi.json"):
            anonymous = client.get(path)
            if needs_key:
                assert anonymous.status_code == 401, path
                error = anonymous.json()["error"]  # the envelope any request without a key gets
                assert error["code"] == "invalid_api_key" and "didn't provide an API key" in error["message"]
                assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
            else:
                assert anonymous.status_code == 200, path
        # /health never needs a key.
        assert client.get("/health").status_code == 200


def test_the_setting_is_checked() -> None:
    from appliance.core.errors import ConfigError

    with pytest.raises(ConfigError, match="schema auth must be 'auto', 'on' or 'off'"):
        load_settings({"schema_auth": "maybe"}, environ={})
    assert load_settings(environ={"ALVEARE_SCHEMA_AUTH": "off"}).schema_auth == "off"
