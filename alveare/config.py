"""Where the SDK finds its API key and server: arguments, then the environment, then the config file.

The config file is the one `alveare auth login` writes (mode 0600, see write_config_file):

    $ALVEARE_CONFIG, else $XDG_CONFIG_HOME/alveare/config.toml, else ~/.config/alveare/config.toml

    api_key = "alv_live_..."
    base_url = "https://alveare.example.internal:8080"
    ca_cert = "/home/you/.config/alveare/alveare-cert.pem"   # the appliance's own certificate

All keys are optional; a missing file is no error, a malformed one is (silently using another
server or no key would be worse).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alveare.errors import AlveareError

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
# The settings `alveare serve` listens by: on the same machine they name the server too.
HOST_ENV, PORT_ENV, INSECURE_ENV = "ALVEARE_HOST", "ALVEARE_PORT", "ALVEARE_INSECURE_HTTP"
API_KEY_ENV = "ALVEARE_API_KEY"
BASE_URL_ENV = "ALVEARE_BASE_URL"
CONFIG_ENV = "ALVEARE_CONFIG"
CA_CERT_ENV = "ALVEARE_CA_CERT"


@dataclass(frozen=True)
class Config:
    api_key: str | None
    base_url: str
    # The appliance's own certificate (a PEM path) to trust over HTTPS; None: the system's authorities.
    ca_cert: str | None = None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file's location (it may not exist)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base).expanduser() if base else Path.home() / ".config"
    return root / "alveare" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """api_key, base_url and ca_cert from the file, when it exists and has them."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AlveareError(f"Could not read the Alveare config file {path}: {exc}") from None
    found = {}
    for name in ("api_key", "base_url", "ca_cert"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise AlveareError(f"{path}: {name} must be a string.")
        found[name] = value
    return found


def resolve(
    api_key: str | None,
    base_url: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    ca_cert: str | None = None,
) -> Config:
    """Arguments win, then ALVEARE_API_KEY / ALVEARE_BASE_URL / ALVEARE_CA_CERT, then the config file,
    then the local server (local_server: ALVEARE_HOST and ALVEARE_PORT, as serve reads them)."""
    environ = os.environ if environ is None else environ
    api_key = api_key or environ.get(API_KEY_ENV) or None
    base_url = base_url or environ.get(BASE_URL_ENV) or None
    ca_cert = ca_cert or environ.get(CA_CERT_ENV) or None
    if api_key is None or base_url is None or ca_cert is None:
        stored = read_config_file(config_path(environ))
        api_key = api_key or stored.get("api_key")
        base_url = base_url or stored.get("base_url")
        ca_cert = ca_cert or stored.get("ca_cert")
    return Config(api_key=api_key, base_url=server_root(base_url or local_server(environ)), ca_cert=ca_cert)


def local_server(environ: Mapping[str, str]) -> str:
    """The server on this machine, by the variables serve reads (ALVEARE_HOST, ALVEARE_PORT): HTTP on
    loopback, HTTPS where serve listens beyond it (as it does unless ALVEARE_INSECURE_HTTP is set), a
    wildcard address reached on loopback."""
    host = environ.get(HOST_ENV) or "127.0.0.1"
    port = environ.get(PORT_ENV) or "8080"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AlveareError(f"{PORT_ENV} must be a port number (1-65535), not {port!r}.")
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    https = not loopback and environ.get(INSECURE_ENV, "").lower() not in ("1", "true", "yes", "on")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if https else 'http'}://{host}:{port}"


def server_root(url: str) -> str:
    """The server's root URL; an OpenAI-style base URL ending in /v1 names the same server."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise AlveareError(f"The base URL must start with http:// or https://, not {url!r}.")
    return url.removesuffix("/v1")


def _toml_string(value: str) -> str:
    # A TOML basic string: JSON's escaping is a subset TOML accepts for these characters.
    return json.dumps(value, ensure_ascii=False)


def write_config_file(path: Path, values: Mapping[str, str | None]) -> None:
    """Write api_key, base_url and ca_cert (None leaves a key out) to the config file, mode 0600 from the start
    (never briefly readable by others), replacing it atomically; its directory is created 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [f"{name} = {_toml_string(value)}\n" for name, value in values.items() if value is not None]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# Written by `alveare auth login`.\n")
            f.writelines(lines)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
