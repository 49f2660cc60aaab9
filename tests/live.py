"""Start and stop a real `alveare serve` process on a free loopback port, as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from appliance.boot.init import FIRST_ADMIN_KEY_FILE
from appliance.core.errors import Conflict
from appliance.store import Store

ALVEARE = [sys.executable, "-m", "appliance"]

# A models dir shared by every server the run starts (conftest.py sets it): the first start on the
# embedded model makes its optimised copy there, as a user's first start does, and the others serve it.
SHARED_MODELS: Path | None = None
# How long a first start may take to measure and make that copy before it listens.
FIRST_START_TIMEOUT_S = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALVEARE_DATA_DIR": str(data_dir)}
    result = subprocess.run([*ALVEARE, *args], env=env, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"alveare {' '.join(args)} failed: {result.stderr}")
    return result


def new_key(data_dir: Path, account: str, plan: str = "scale", test: bool = False) -> str:
    """A key on `account` (made on `plan` unless it exists), written in this process to the data dir's
    store as `alveare admin accounts create` and `admin keys create` do with no server answering."""
    store = Store(data_dir, create=False)
    try:
        with contextlib.suppress(Conflict):  # already made: the plan stays as it is
            store.create_account(account, plan)
        return store.create_key(account, test=test).key
    finally:
        store.close()


def first_admin_key(data_dir: Path) -> str:
    """The key a first start wrote to the data dir's 0600 file, as an admin would read it."""
    return (data_dir / FIRST_ADMIN_KEY_FILE).read_text(encoding="utf-8").strip()


@dataclass
class LiveServer:
    process: subprocess.Popen[str]
    data_dir: Path
    port: int
    admin_key: str
    output: list[str]
    # "https" when the server said it listens on HTTPS (beyond loopback); its own certificate is then trusted.
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path | None:
        return self.data_dir / "tls-cert.pem" if self.scheme == "https" else None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def new_key(self, account: str, plan: str = "scale", test: bool = False) -> str:
        return new_key(self.data_dir, account, plan=plan, test=test)

    def log_text(self) -> str:
        return "".join(self.output)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    data_dir: Path,
    *extra: str,
    ready_timeout: float = 120,
    env: dict[str, str] | None = None,
    shared_models: bool = True,
) -> LiveServer:
    """`alveare serve` on `data_dir` with the given flags. A data dir with no models/ yet gets the run's
    shared one (SHARED_MODELS) unless `shared_models` is False: a first start that must make its own copy.
    Until a report is there, a start on the embedded model may be the first start that measures and
    makes the copy (minutes on 2 cores), so it is given as long as test_first_start_optimize.py gives it."""
    if shared_models and SHARED_MODELS is not None and not (data_dir / "models").exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (data_dir / "models").symlink_to(SHARED_MODELS, target_is_directory=True)
        if not any(SHARED_MODELS.glob("*.optimize.json")):
            ready_timeout = max(ready_timeout, FIRST_START_TIMEOUT_S)
    port = free_port()
    env = {**os.environ, "ALVEARE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        [*ALVEARE, "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    admin_key = ""
    scheme = "http"
    assert process.stdout is not None
    deadline = time.monotonic() + ready_timeout
    # A first start says where it wrote the admin key (its output is a pipe, not a terminal), before "Listening on".
    for line in process.stdout:
        output.append(line)
        if line.startswith("Admin API key written to "):
            admin_key = first_admin_key(data_dir)
        if line.startswith("Listening on"):
            scheme = "https" if line.startswith("Listening on https://") else "http"
            break
        if time.monotonic() > deadline:
            break
    server = LiveServer(process, data_dir, port, admin_key, output, scheme)

    def drain() -> None:
        # Keep reading the server's output (so its logs can be checked and the pipe never fills).
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            time.sleep(0.2)
            raise AssertionError("alveare serve exited:\n" + "".join(output))
        try:
            verify = ssl.create_default_context(cafile=server.ca_cert) if server.ca_cert else True
            health = httpx.get(server.url + "/health", timeout=2, verify=verify).json()
            if health["model_loaded"]:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError("alveare serve did not become ready:\n" + "".join(output))
