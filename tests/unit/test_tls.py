"""The appliance's own certificate: valid for the names given, key 0600, a stable fingerprint,
usable by a real TLS server and trusted by a client that is given it."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from appliance.core.errors import ConfigError
from appliance.core.tls import check_pair, fingerprint, machine_names, make_certificate


def test_a_made_certificate_is_served_and_trusted(tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    printed = make_certificate(cert, key, names=["localhost", "hive.example"], addresses=["127.0.0.1"])
    assert key.stat().st_mode & 0o777 == 0o600
    assert printed == fingerprint(cert) and len(printed.split(":")) == 32
    # the standard library's reading agrees with cryptography's, also on a chain (the first one)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert printed == ":".join(f"{b:02X}" for b in parsed.fingerprint(hashes.SHA256()))
    chain = tmp_path / "chain.pem"
    chain.write_text("# issued by hand\n" + cert.read_text() * 2)
    assert fingerprint(chain) == printed
    check_pair(cert, key)

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hi")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        # A client given the appliance's certificate trusts it; one without it refuses.
        assert httpx.get(url, verify=ssl.create_default_context(cafile=str(cert))).text == "hi"
    finally:
        server.server_close()


def test_an_untrusted_client_refuses_it(tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_certificate(cert, key, names=["localhost"], addresses=["127.0.0.1"])
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.server_close()


def test_mismatched_or_missing_files_are_config_errors(tmp_path) -> None:
    a_cert, a_key = tmp_path / "a.pem", tmp_path / "a.key"
    b_cert, b_key = tmp_path / "b.pem", tmp_path / "b.key"
    make_certificate(a_cert, a_key, names=["localhost"], addresses=[])
    make_certificate(b_cert, b_key, names=["localhost"], addresses=[])
    with pytest.raises(ConfigError, match="cannot be used"):
        check_pair(a_cert, b_key)
    with pytest.raises(ConfigError, match="not found"):
        check_pair(tmp_path / "nope.pem", a_key)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ConfigError, match="not a readable PEM"):
        fingerprint(tmp_path / "junk.pem")


def test_machine_names_include_loopback() -> None:
    names, addresses = machine_names()
    assert "localhost" in names and "127.0.0.1" in addresses
