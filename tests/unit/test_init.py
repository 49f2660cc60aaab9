"""`alveare init` and how `serve` chooses HTTPS: the private data dir, the once-only admin key, the
certificate and its fingerprint, and plain HTTP only on loopback or when asked for."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from alveare.config import resolve, write_config_file
from appliance.boot.init import initialize
from appliance.boot.plan import plan_listen
from appliance.cli import main
from appliance.core.errors import ConfigError
from appliance.core.settings import load_settings
from appliance.core.tls import is_loopback, make_certificate


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("192.0.2.7", False), ("myhost", False)],
)  # fmt: skip
def test_loopback_is_127_8_and_ip6_loopback_and_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_https_beyond_loopback_plain_http_on_it_or_when_asked(tmp_path: Path) -> None:
    def plan(**values: object):
        return plan_listen(
            load_settings({"data_dir": str(tmp_path), "port": 9000, **values}, environ={}), socket.gethostname()
        )

    local = plan()
    assert local.cert is None and local.base_url == "http://127.0.0.1:9000" and not local.insecure
    wide = plan(host="0.0.0.0")
    assert wide.cert == tmp_path / "tls-cert.pem" and wide.key == tmp_path / "tls-key.pem"
    assert wide.base_url == f"https://{socket.gethostname()}:9000"
    insecure = plan(host="0.0.0.0", insecure_http=True)
    assert insecure.cert is None and insecure.insecure and insecure.base_url.startswith("http://")
    cert, key = tmp_path / "own.pem", tmp_path / "own.key"
    make_certificate(cert, key, names=["localhost"], addresses=["127.0.0.1"])
    # An admin-supplied certificate is used even on loopback.
    own = plan(tls_cert=str(cert), tls_key=str(key))
    assert own.cert == cert and own.base_url == "https://127.0.0.1:9000"
    assert plan(host="::1").base_url == "http://[::1]:9000"


def test_an_admin_certificate_is_checked_and_used_instead_of_making_one(tmp_path: Path) -> None:
    cert, key = tmp_path / "own.pem", tmp_path / "own.key"
    make_certificate(cert, key, names=["localhost"], addresses=["127.0.0.1"])
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    make_certificate(other_cert, other_key, names=["localhost"], addresses=["127.0.0.1"])
    data = tmp_path / "data"
    done = initialize(load_settings({"data_dir": str(data), "tls_cert": str(cert), "tls_key": str(key)}, environ={}))
    assert done.cert_path == cert and not done.made_cert and not (data / "tls-cert.pem").exists()
    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError, match="cannot be used"):
        initialize(
            load_settings({"data_dir": str(fresh), "tls_cert": str(cert), "tls_key": str(other_key)}, environ={})
        )
    assert not fresh.exists()


def test_tls_cert_and_key_go_together(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    code, _, err = run(capsys, "--data-dir", str(data), "init", "--tls-cert", str(tmp_path / "x.pem"))
    assert code == 2 and "--tls-cert and --tls-key" in err and "go together" in err and err.count("\n") == 1
    assert not data.exists()


def test_the_sdk_finds_the_ca_cert_in_args_env_and_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    write_config_file(config, {"api_key": "alv_live_x", "ca_cert": "/from/file.pem"})
    environ = {"ALVEARE_CONFIG": str(config)}
    assert resolve(None, None, environ).ca_cert == "/from/file.pem"
    assert resolve(None, None, {**environ, "ALVEARE_CA_CERT": "/from/env.pem"}).ca_cert == "/from/env.pem"
    assert resolve(None, None, environ, ca_cert="/from/arg.pem").ca_cert == "/from/arg.pem"


def test_a_missing_ca_cert_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    import alveare

    monkeypatch.delenv("ALVEARE_CA_CERT", raising=False)
    with pytest.raises(alveare.AlveareError, match=r"Cannot use .*nope\.pem"):
        alveare.Client(api_key="alv_live_x", base_url="https://127.0.0.1:1", ca_cert=str(tmp_path / "nope.pem"))
