"""`alveare init` as an admin runs it: it makes the certificate in a child process (so a server never
loads cryptography), the private data dir and the once-only admin key, printed on a terminal and
otherwise written to a 0600 file in the data dir. The rest of init and of how
`serve` chooses HTTPS, which needs no child, is tests/unit/test_init.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from appliance.boot.init import FIRST_ADMIN_KEY_FILE
from appliance.cli import main
from appliance.core.errors import ConfigError
from appliance.core.tls import fingerprint
from appliance.store import Store


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_makes_a_private_data_dir_an_admin_key_and_a_certificate(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    code, out, err = run(capsys, "--data-dir", str(data), "init")
    assert code == 0 and err == ""
    assert data.stat().st_mode & 0o777 == 0o700
    for private in ("alveare.db", "key-secret", "tls-key.pem", FIRST_ADMIN_KEY_FILE):
        assert (data / private).stat().st_mode & 0o777 == 0o600, private
    # Its output is not a terminal (it may be kept): the key is in the data dir, and the output says where.
    assert "alv_" not in out and f"Admin API key written to {data / FIRST_ADMIN_KEY_FILE} (mode 0600)" in out
    key = (data / FIRST_ADMIN_KEY_FILE).read_text().strip()
    store = Store(data, create=False)
    try:
        principal = store.authenticate(key)
        assert principal is not None and principal.admin
    finally:
        store.close()
    assert fingerprint(data / "tls-cert.pem") in out
    # Again: nothing is made twice and the admin key is not shown again; the fingerprint is.
    code, again, _ = run(capsys, "--data-dir", str(data), "init")
    assert code == 0 and "alv_" not in again and "set up already" in again
    assert fingerprint(data / "tls-cert.pem") in again


def test_on_a_terminal_init_prints_the_admin_key_and_writes_no_file(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    data = tmp_path / "data"
    terminal, tty = pty.openpty()
    init = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--data-dir", str(data), "init"],
        stdin=subprocess.DEVNULL,
        stdout=tty,
        stderr=subprocess.PIPE,
    )
    os.close(tty)
    out = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(terminal)
    assert init.wait(timeout=60) == 0, init.stderr.read() if init.stderr else ""
    keys = [line.strip() for line in out.decode().splitlines() if line.strip().startswith("alv_live_")]
    assert len(keys) == 1 and "shown once" in out.decode()
    assert not (data / FIRST_ADMIN_KEY_FILE).exists()


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
