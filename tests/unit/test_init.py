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
from appliance.core.tls import fingerprint, is_loopback, make_certificate


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_makes_a_private_data_dir_an_admin_key_and_a_certificate(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    code, out, err = run(capsys, "--data-dir", str(data), "init")
    assert code == 0 and err == ""
    assert data.stat().st_mode & 0o777 == 0o700
    for private in ("alveare.db", "key-secret", "tls-key.pem"):
        assert (data / private).stat().st_mode & 0o777 == 0o600, private
    keys = [line.strip() for line in out.splitlines() if line.strip().startswith("alv_live_")]
    assert len(keys) == 1
    assert fingerprint(data / "tls-cert.pem") in out
    # Again: nothing is made twice and the admin key is not shown again; the fingerprint is.
    code, again, _ = run(capsys, "--data-dir", str(data), "init")
    assert code == 0 and "alv_" not in again and "set up already" in again
    assert fingerprint(data / "tls-cert.pem") in again


def test_init_prints_an_openai_snippet_with_the_right_base_url(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    code, out, _ = run(
        capsys, "--data-dir", str(data), "init", "--openai-snippet", "--port", "9443", "--host", "0.0.0.0"
    )
    assert code == 0
    assert f'base_url="https://{socket.gethostname()}:9443/v1"' in out
    assert f'cafile="{data / "tls-cert.pem"}"' in out and "http_client=httpx.Client(verify=trust)" in out
    code, out, _ = run(capsys, "--data-dir", str(data), "init", "--openai-snippet", "--port", "9443")
    assert 'base_url="http://127.0.0.1:9443/v1"' in out and "verify" not in out
    compile(out[out.index("from openai") :], "snippet", "exec")


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


def test_the_certificate_is_made_in_a_child_so_the_server_never_loads_cryptography(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from appliance.boot.init import initialize\n"
        "from appliance.core.settings import load_settings\n"
        f"done = initialize(load_settings({{'data_dir': {str(tmp_path / 'data')!r}}}, environ={{}}))\n"
        "print(done.made_cert, any(m.startswith('cryptography') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]
    from appliance.core.tls import check_pair

    check_pair(tmp_path / "data" / "tls-cert.pem", tmp_path / "data" / "tls-key.pem")


def test_a_certificate_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    from appliance.core.tls import make_certificate_apart

    with pytest.raises(ConfigError, match=r"could not make the TLS certificate .*: .*Error"):
        make_certificate_apart(tmp_path / "no" / "cert.pem", tmp_path / "no" / "key.pem")
