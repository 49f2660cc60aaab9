"""GET /sdk/python and /sdk/typescript on the session's server: no key needed, redirects to the file
names pip and npm read, a wheel that is this installation, and clear 404s in the error envelope."""

from __future__ import annotations

import io
import zipfile

import httpx
from live import LiveServer

from appliance import __version__
from appliance.core.sdk_packages import read_tarball, tarball_path, wheel_name


def test_the_python_wheel(server: LiveServer) -> None:
    r = httpx.get(server.url + "/sdk/python", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == f"/sdk/python/{wheel_name()}"
    wheel = httpx.get(server.url + "/sdk/python", follow_redirects=True)
    assert wheel.status_code == 200 and wheel.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(wheel.content)) as z:
        names = set(z.namelist())
        info = f"alveare-{__version__}.dist-info"
        assert {"alveare/__init__.py", "alveare/client.py", "appliance/cli/__init__.py", f"{info}/RECORD"} <= names
        metadata = z.read(f"{info}/METADATA").decode()
        assert "Name: alveare" in metadata and "Requires-Dist: httpx" in metadata
        assert "alveare = appliance.cli:main" in z.read(f"{info}/entry_points.txt").decode()
        assert not any("__pycache__" in n for n in names)


def test_the_typescript_tarball_or_a_clear_404(server: LiveServer) -> None:
    r = httpx.get(server.url + "/sdk/typescript", follow_redirects=True)
    if read_tarball() is None:
        assert r.status_code == 404
        error = r.json()["error"]
        assert "was not built on this appliance" in error["message"] and str(tarball_path()) in error["message"]
    else:
        assert r.status_code == 200 and r.content[:2] == b"\x1f\x8b"  # gzip


def test_another_file_name_is_a_404_in_the_envelope(server: LiveServer) -> None:
    for path in ("/sdk/python/other-1.0-py3-none-any.whl", "/sdk/typescript/other.tgz"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
