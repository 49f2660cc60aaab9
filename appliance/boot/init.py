"""The data dir's first-run setup, which `alveare init` and the first `serve` run: the data dir
(mode 0700), the key-hashing secret, the first admin key and the appliance's own TLS certificate.
Each step is done once and skipped when already there, so running it again is harmless."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.boot.plan import own_cert_paths

if TYPE_CHECKING:
    from appliance.core.settings import Settings

# Where the first admin key goes when the output is not a terminal: a journal, `podman logs` or a
# redirected file would keep it for anyone who reads logs; the data dir is its owner's alone.
FIRST_ADMIN_KEY_FILE = "first-admin.key"


@dataclass(frozen=True)
class Initialized:
    data_dir: Path
    created_dir: bool
    admin_key: str | None  # only when it was made now: it is shown once
    cert_path: Path
    fingerprint: str
    made_cert: bool


def initialize(settings: Settings) -> Initialized:
    from appliance.core import tls
    from appliance.store import Store

    cert, key = own_cert_paths(settings)
    if settings.tls_cert:  # before anything is made: a bad pair leaves no half-made data dir
        tls.check_pair(cert, key)
    created = not settings.data_path.exists()
    store = Store(settings.data_path, database=settings.database)  # the dir (0700) and the secret (0600)
    try:
        admin = store.ensure_admin()
    finally:
        store.close()
    made = False
    if not settings.tls_cert and not (cert.exists() and key.exists()):
        tls.make_certificate_apart(cert, key)
        made = True
    return Initialized(settings.data_path, created, admin.key if admin else None, cert, tls.fingerprint(cert), made)


def keep_first_admin_key(data_dir: Path, key: str) -> Path:
    """Write the first admin key to <data_dir>/first-admin.key, mode 0600 from its creation (never
    readable by others, even for a moment); returns the file's path."""
    path = data_dir / FIRST_ADMIN_KEY_FILE
    tmp = path.with_name(f".{FIRST_ADMIN_KEY_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a crashed run's leftover: O_EXCL below must create the file with our mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
    return path
