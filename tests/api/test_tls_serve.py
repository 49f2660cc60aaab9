"""A real appliance listening beyond loopback speaks HTTPS with its own certificate, which the SDK,
the openai SDK, the user CLI and the admin CLI trust when given it; plain HTTP beyond loopback needs
--insecure-http and says so; and no secret reaches a log line (the first start's admin key included,
with its output redirected), a process listing or the database."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from live import ALVEARE, LiveServer, start_server

import alveare
from appliance.boot.init import FIRST_ADMIN_KEY_FILE
from appliance.core.tls import machine_names


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # serve's own first start, its output a pipe as a service's is: it makes the data dir, the certificate
    # and the admin key, which it writes to a 0600 file rather than to its output (start_server reads it).
    live = start_server(tmp_path_factory.mktemp("alveare-tls") / "data", "--host", "0.0.0.0", "--timeout", "120")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def tls_key(tls_server: LiveServer) -> str:
    return tls_server.new_key("tls-app", plan="scale")


def network_address() -> str | None:
    """An IPv4 address of this machine beyond loopback, when it has one (the certificate names it)."""
    for address in machine_names()[1]:
        ip = ipaddress.ip_address(address)
        if ip.version == 4 and not ip.is_loopback:
            return address
    return None


def env_for(server: LiveServer, **extra: str) -> dict[str, str]:
    # The admin CLI finds the server from the same settings the server was started with.
    return {
        **os.environ,
        "ALVEARE_DATA_DIR": str(server.data_dir),
        "ALVEARE_HOST": "0.0.0.0",
        "ALVEARE_PORT": str(server.port),
        **extra,
    }


def test_beyond_loopback_the_server_speaks_https_with_its_own_certificate(tls_server: LiveServer, tls_key: str) -> None:
    assert tls_server.scheme == "https"
    cert = tls_server.ca_cert
    assert cert is not None
    listening = next(line for line in tls_server.output if line.startswith("Listening on"))
    assert "https://" in listening and "http://" not in listening
    urls = [tls_server.url] + ([f"https://{a}:{tls_server.port}"] if (a := network_address()) else [])
    for url in urls:
        with alveare.Client(api_key=tls_key, base_url=url, ca_cert=str(cert), max_retries=0) as client:
            assert client.models().data
            assert client.infer("classify", "My card was charged twice.", max_tokens=4).completion_tokens >= 1
    # The openai SDK, with an httpx client that trusts the appliance's certificate.
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trust) as http:
        client = openai.OpenAI(base_url=urls[-1] + "/v1", api_key=tls_key, http_client=http, max_retries=0)
        assert client.models.list().data
        reply = client.chat.completions.create(
            model="classify", messages=[{"role": "user", "content": "Refund please"}], max_tokens=4
        )
        assert reply.choices[0].finish_reason in ("stop", "length")
    # Without the certificate: one clear error, not a retried connection failure; plain HTTP gets nothing.
    with (
        alveare.Client(api_key=tls_key, base_url=tls_server.url, max_retries=0) as untrusting,
        pytest.raises(alveare.AlveareError, match="does not trust"),
    ):
        untrusting.models()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/health", timeout=10)


def test_auth_login_stores_the_certificate_for_later_commands(
    tls_server: LiveServer, tls_key: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    env = {**os.environ, "ALVEARE_CONFIG": str(config)}
    env.pop("ALVEARE_API_KEY", None)
    env.pop("ALVEARE_CA_CERT", None)
    login = subprocess.run(
        [
            *ALVEARE,
            "auth",
            "login",
            "--base-url",
            tls_server.url,
            "--ca-cert",
            str(tls_server.ca_cert),
            "--api-key-stdin",
        ],
        input=tls_key + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    assert f'ca_cert = "{tls_server.ca_cert}"' in config.read_text()
    status = subprocess.run([*ALVEARE, "auth", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "The server accepts the key." in status.stdout, status.stderr


def test_admin_backup_through_the_running_server(tls_server: LiveServer, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    env = env_for(tls_server, ALVEARE_ADMIN_KEY=tls_server.admin_key)
    done = subprocess.run(
        [*ALVEARE, "admin", "backup", str(target)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Backed up to {target}:") and done.stdout.count("\n") == 1
    assert "integrity ok" in done.stdout and target.stat().st_size > 0
    folder = tmp_path / "backups"
    folder.mkdir()
    as_json = subprocess.run(
        [*ALVEARE, "admin", "backup", str(folder), "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 0, as_json.stderr
    info = json.loads(as_json.stdout)
    assert set(info) == {"path", "bytes", "created_at", "integrity", "accounts", "keys", "usage_records"}
    assert Path(info["path"]).parent == folder and info["integrity"] == "ok" and info["accounts"] >= 1
    # A backup never overwrites a file: one line on stderr, exit 1.
    again = subprocess.run(
        [*ALVEARE, "admin", "backup", str(target)], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_no_secret_in_logs_process_listing_or_database(tls_server: LiveServer, tls_key: str) -> None:
    url, cert = tls_server.url, ssl.create_default_context(cafile=str(tls_server.ca_cert))
    bad_key = "alv_live_" + "Q" * 40
    with httpx.Client(base_url=url, verify=cert, timeout=120) as http:
        good = {"Authorization": f"Bearer {tls_key}"}
        admin = {"Authorization": f"Bearer {tls_server.admin_key}"}
        assert http.post("/v1/infer", headers=good, json={"specialist": "classify", "prompt": "hi", "max_tokens": 4})
        for headers in ({"Authorization": f"Bearer {bad_key}"}, {"Authorization": bad_key}, {"x-api-key": bad_key}):
            refused = http.get("/v1/models", headers=headers)
            assert refused.status_code == 401 and bad_key[12:] not in refused.text  # nor in the error body
        assert http.post("/v1/infer", headers=good, content=b"{not json").status_code == 400
        assert http.post("/v1/infer", headers=good, json={"specialist": "nope", "prompt": "x"}).status_code in (
            400,
            404,
        )
        assert http.get("/v1/admin/accounts", headers=good).status_code == 403
        assert http.get("/v1/admin/accounts", headers=admin).status_code == 200
        for body in (b"", b"[]"):
            assert http.post("/v1/chat/completions", headers=admin, content=body).status_code == 400
    env = env_for(tls_server, ALVEARE_ADMIN_KEY=tls_server.admin_key)
    subprocess.run([*ALVEARE, "admin", "keys", "list"], env=env, capture_output=True, timeout=60, check=True)

    # The first start said where the admin key is, and put it there for the data dir's owner alone.
    key_file = tls_server.data_dir / FIRST_ADMIN_KEY_FILE
    assert f"Admin API key written to {key_file} (mode 0600)" in tls_server.log_text()
    assert key_file.stat().st_mode & 0o777 == 0o600 and tls_server.admin_key.startswith("alv_live_")

    secret = (tls_server.data_dir / "key-secret").read_bytes()
    raw_keys = [tls_server.admin_key, tls_key, bad_key]
    forms = [k.encode() for k in raw_keys] + [secret, secret.hex().encode(), base64.b64encode(secret)]
    logs = tls_server.log_text().encode()
    argv = Path(f"/proc/{tls_server.process.pid}/cmdline").read_bytes()
    database = b"".join(
        p.read_bytes() for p in tls_server.data_dir.iterdir() if p.name.startswith("alveare.db") and p.is_file()
    )
    assert logs and argv and database
    for form in forms:
        for where, text in (("the server log", logs), ("its command line", argv), ("the database", database)):
            assert form not in text, f"a secret appears in {where}"


def test_plain_http_beyond_loopback_needs_the_flag_and_logs_a_warning(tmp_path: Path) -> None:
    live = start_server(tmp_path / "data", "--host", "0.0.0.0", "--insecure-http")
    try:
        assert live.scheme == "http"
        assert httpx.get(live.url + "/health", timeout=10).status_code == 200
        log = live.log_text()
        assert "WARNING" in log and "--insecure-http" in log and "unencrypted" in log
    finally:
        live.stop()


def test_the_sdks_install_from_the_appliance_over_its_own_tls(
    tls_server: LiveServer, tls_key: str, tmp_path: Path
) -> None:
    """pip and npm install the appliance's own SDKs from its URLs, trusting its certificate; the Python
    SDK then finds the server from ALVEARE_HOST and ALVEARE_PORT alone, as serve was started."""
    import shutil
    import sys

    from appliance.core.sdk_packages import tarball_path, wheel_name

    cert = str(tls_server.ca_cert)
    # pip's --cert replaces its authorities (and requests lets CURL_CA_BUNDLE / REQUESTS_CA_BUNDLE override
    # it): a bundle of the system's authorities and the appliance's certificate, as docs/sdks.md says.
    bundle = tmp_path / "bundle.pem"
    system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    bundle.write_text(Path(system).read_text() + Path(cert).read_text())
    skip = ("PYTHONPATH", "VIRTUAL_ENV", "ALVEARE_BASE_URL", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    clean = {k: v for k, v in os.environ.items() if k not in skip}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    url = f"{tls_server.url}/sdk/python/{wheel_name()}"
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--cert", str(bundle), url],
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    script = "import alveare; c = alveare.Client(max_retries=0); print(c.base_url, len(c.models().data))"
    env = {
        **clean,
        "ALVEARE_HOST": "0.0.0.0",
        "ALVEARE_PORT": str(tls_server.port),
        "ALVEARE_CA_CERT": cert,
        "ALVEARE_API_KEY": tls_key,
        "ALVEARE_CONFIG": str(tmp_path / "none.toml"),
    }
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"https://127.0.0.1:{tls_server.port} ") and int(run.stdout.split()[1]) > 0
    # The wheel's CLI came with it, and needs nothing of the server to run.
    cli_run = subprocess.run(
        [str(venv / "bin" / "alveare"), "auth", "status"], env=env, capture_output=True, text=True, timeout=120
    )
    assert cli_run.returncode == 0 and f"127.0.0.1:{tls_server.port}" in cli_run.stdout, cli_run.stdout + cli_run.stderr

    if not tarball_path().exists() or shutil.which("npm") is None:
        pytest.skip(f"no TypeScript SDK tarball at {tarball_path()} (packaging/run.sh makes it with npm)")
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    npm = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--cafile", cert, f"{tls_server.url}/sdk/typescript"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if npm.returncode != 0:  # npm reads the package type from the URL's file name: the redirect's target
        npm = subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--cafile",
                cert,
                f"{tls_server.url}/sdk/typescript/{tarball_path().name}",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert npm.returncode == 0, npm.stdout + npm.stderr
    code = (
        "import { Alveare } from '@alveare/sdk';"
        "const c = new Alveare({ maxRetries: 0 });"
        "const m = await c.models(); console.log(c.baseURL, m.data.length);"
    )
    node = subprocess.run(
        ["node", "--input-type=module", "-e", code],
        cwd=project,
        env={**env, "NODE_EXTRA_CA_CERTS": cert},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert node.returncode == 0, node.stderr
    assert node.stdout.startswith(f"https://127.0.0.1:{tls_server.port} ")


def test_the_schema_is_open_on_loopback_and_needs_a_key_beyond_it(
    server: LiveServer, tls_server: LiveServer, tls_key: str
) -> None:
    """--schema-auth's default on live servers: the session's on 127.0.0.1, this module's on 0.0.0.0; and
    neither page names a host on the internet to load anything from."""
    for path in ("/schema", "/schema/openapi.json"):
        page = httpx.get(server.url + path, timeout=30)
        assert page.status_code == 200 and not re.search(rb"(?i)(https?:)?//(?!127\.0\.0\.1|localhost)", page.content)
    trust = ssl.create_default_context(cafile=str(tls_server.ca_cert))
    with httpx.Client(base_url=tls_server.url, verify=trust, timeout=30) as http:
        for path in ("/schema", "/schema/openapi.json"):
            anonymous = http.get(path)
            assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
            assert http.get(path, headers={"Authorization": f"Bearer {tls_key}"}).status_code == 200
        assert http.get("/health").status_code == 200
