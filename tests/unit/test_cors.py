"""CORS: off by default; with allowed origins set, preflights are answered (before authentication) and
responses carry the headers a browser needs, including those a client acts on (retry hints, request id)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.core.errors import ConfigError
from appliance.core.settings import Settings, load_settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.fixture
def make(tmp_path: Path):
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]

    def make(cors_origins: str | None) -> tuple[TestClient, str]:
        settings = Settings(data_dir=str(tmp_path), cors_origins=cors_origins)
        app = create_app(settings, engine=FakeEngine(), store=store, specialists=load_specialists())
        return TestClient(app, raise_server_exceptions=False), key

    yield make
    store.close()


def test_off_by_default(make) -> None:
    client, key = make(None)
    with client:
        r = client.get("/v1/models", headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in client.options("/v1/infer", headers=PREFLIGHT).headers


def test_allowed_origins_get_preflights_and_headers(make) -> None:
    client, key = make("https://app.example.com, http://localhost:5173")
    with client:
        r = client.options("/v1/infer", headers=PREFLIGHT)
        assert r.status_code in (200, 204)
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()

        r = client.get("/v1/models", headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {key}"})
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        exposed = r.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed and "retry-after-ms" in exposed

        # An error answer is readable by the page too (the SDK needs its envelope).
        r = client.get("/v1/models", headers={"Origin": "https://app.example.com"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://app.example.com"

        other = dict(PREFLIGHT, Origin="https://evil.example.org")
        assert client.options("/v1/infer", headers=other).headers.get("access-control-allow-origin") is None


def test_any_origin(make) -> None:
    client, _ = make("*")
    with client:
        assert client.options("/v1/chat/completions", headers=PREFLIGHT).headers["access-control-allow-origin"] == "*"


def test_setting_from_the_environment_and_checked() -> None:
    settings = load_settings(environ={"ALVEARE_CORS_ORIGINS": "https://a.example, https://b.example/"})
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]
    with pytest.raises(ConfigError, match="CORS origin"):
        load_settings(environ={"ALVEARE_CORS_ORIGINS": "a.example"})


def test_serve_flag() -> None:
    from appliance.cli import build_parser
    from appliance.cli.base import load_settings

    assert load_settings(build_parser().parse_args(["serve", "--cors-origins", "*"])).cors_origins == "*"
