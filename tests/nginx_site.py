"""The shipped nginx configuration (packaging/nginx/alveare.conf, an `http` block's include) run by
nginx in a temporary prefix: wrapped in a main configuration of its own, with the node addresses and
the listen line replaced where a test runs nodes of its own."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

SITE = Path(__file__).parents[1] / "packaging" / "nginx" / "alveare.conf"


def nginx_binary() -> str:
    nginx = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin") or "")
    if not nginx:
        pytest.fail("nginx is not installed; ./packaging/run.sh test installs it (the nginx-light package)")
    return nginx


def nginx_config(prefix: Path, nodes: list[str] | None = None, listen: str | None = None) -> Path:
    """A main configuration under `prefix` that includes the shipped site, as written or with these
    `nodes` (host:port) and `listen` address."""
    site = SITE.read_text()
    if nodes is not None:
        lines = "".join(f"    server {n} max_fails=2 fail_timeout=10s;\n" for n in nodes)
        site = re.sub(r"(    server 10\.0\.0\.\d+:8080 [^\n]*\n)+", lines, site)
    if listen is not None:
        site = site.replace("listen 8080;", f"listen {listen};")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "alveare.conf").write_text(site)
    main = prefix / "nginx.conf"
    main.write_text(
        f"daemon off;\npid {prefix}/nginx.pid;\nerror_log stderr warn;\nevents {{}}\nhttp {{\n"
        f"    access_log off;\n    client_body_temp_path {prefix}/body;\n    proxy_temp_path {prefix}/proxy;\n"
        f"    include {prefix}/alveare.conf;\n}}\n"
    )
    return main
