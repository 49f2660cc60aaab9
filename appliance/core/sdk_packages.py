"""The SDK packages the appliance serves to its own clients (GET /sdk/python, /sdk/typescript), so an
app developer installs the client that matches this server without the public index, where an
unrelated project owns the name `alveare`.

The Python wheel is this installation's own distribution, packed from the installed files: the
`alveare` SDK with the user CLI (and the server's code, whose dependencies stay extras), with the
installed METADATA and entry points, so `pip install URL` brings httpx and msgspec only, as
`pip install alveare` from a checkout does. The TypeScript tarball is `npm pack` of sdk/typescript,
made where Node.js is at hand (packaging/run.sh, install.sh) into <prefix>/share/alveare/.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from appliance import __version__

DISTRIBUTION = "alveare"
PACKAGES = ("alveare", "appliance", "tui")
# Package data the server and the TUI need besides their modules (pyproject's package-data).
DATA_SUFFIXES = (".py", ".toml", ".txt", ".jinja", ".tcss", ".typed")
NPM_PACKAGE = "alveare-sdk"


@dataclass(frozen=True)
class Package:
    filename: str
    content: bytes
    media_type: str


def wheel_name() -> str:
    return f"{DISTRIBUTION}-{__version__}-py3-none-any.whl"


def tarball_name() -> str:
    return f"{NPM_PACKAGE}-{__version__}.tgz"


def tarball_path(prefix: str = sys.prefix) -> Path:
    """Where the TypeScript SDK's tarball is looked for: beside this installation's other data."""
    return Path(prefix) / "share" / "alveare" / tarball_name()


def build_wheel() -> Package:
    """This installation as a wheel (PEP 427): its packages' files, METADATA, WHEEL, entry points, RECORD."""
    import appliance

    root = Path(appliance.__file__).resolve().parent.parent
    dist = metadata.distribution(DISTRIBUTION)
    info = f"{DISTRIBUTION}-{__version__}.dist-info"
    files: list[tuple[str, bytes]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in path.parts:
                files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: alveare {__version__}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    # The installed metadata as written (a dist-info's METADATA, or a checkout's egg-info PKG-INFO), not
    # re-serialised: the email module refuses to fold a description (the README) with a line that
    # looks like a header ("ALVEARE_LB_BIND=0.0.0.0:8080 ...").
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.metadata.as_string()
    files.append((f"{info}/METADATA", text.encode()))
    files.append((f"{info}/WHEEL", wheel_meta.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files]
    files.append((f"{info}/RECORD", ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return Package(wheel_name(), out.getvalue(), "application/zip")


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def read_tarball(prefix: str = sys.prefix) -> Package | None:
    path = tarball_path(prefix)
    try:
        return Package(path.name, path.read_bytes(), "application/gzip")
    except OSError:
        return None
