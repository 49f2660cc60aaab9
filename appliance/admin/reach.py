"""Which reach of AdminOps a caller gets: the server's admin API when one answers (with the TUI's own
admin key from the data dir), else LocalAdmin on the data dir."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.admin.local import LocalAdmin
from appliance.admin.ops import DEFAULT_URL, AdminOps
from appliance.admin.remote import DEFAULT_TIMEOUT_S, AdminClient, root_url, server_answers
from appliance.core.errors import (
    AuthenticationFailed,
    NotFound,
)
from appliance.store import (
    ADMIN_ACCOUNT,
    LOCAL_ACTOR,
    Store,
)
from appliance.store.database import DB_FILE

TUI_KEY_FILE = "tui-admin.key"


def tui_admin_key(data_dir: Path, *, renew: bool = False, database: str | None = None) -> str:
    """The TUI's own admin key, kept in <data_dir>/tui-admin.key (mode 0600) and created on first
    use on the built-in admin account: whoever can read the data dir is an admin already."""
    path = data_dir / TUI_KEY_FILE
    if not renew and path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
    if not database and not (data_dir / DB_FILE).exists():
        raise NotFound(
            f"{data_dir} is not an Alveare data dir (no {DB_FILE}); pass the server's --data-dir, or an admin key."
        )
    store = Store(data_dir, database=database)
    try:
        try:
            store.account(ADMIN_ACCOUNT)
        except NotFound:
            store.create_account(ADMIN_ACCOUNT, "scale", actor=LOCAL_ACTOR)
        key = store.create_key(ADMIN_ACCOUNT, admin=True, actor=LOCAL_ACTOR).key
    finally:
        store.close()
    tmp = path.with_name(f".{TUI_KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
    return key


def open_admin(
    data_dir: Path | str,
    url: str | None = None,
    admin_key: str | None = None,
    *,
    specialists_path: Path | str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    ca_cert: Path | str | None = None,
    database: str | None = None,
) -> AdminOps:
    """An AdminClient when a server answers at `url` (default http://127.0.0.1:8080), else a
    LocalAdmin on the data dir (with the catalogue from `specialists_path`, default the built-in one).

    The admin key: `admin_key` when given (ALVEARE_ADMIN_KEY is the caller's to pass), else the
    TUI's own key from the data dir, renewed once if the server no longer accepts it. `ca_cert`: the
    appliance's certificate to trust over HTTPS (default: the system's authorities). `database`: the
    store's PostgreSQL URL, for a cluster's store (default: SQLite in the data dir).
    """
    data_dir = Path(data_dir).expanduser()
    url = root_url(url or DEFAULT_URL)
    if server_answers(url, ca_cert=ca_cert):
        if admin_key:
            return AdminClient(url, admin_key, timeout, ca_cert=ca_cert)
        client = AdminClient(url, tui_admin_key(data_dir, database=database), timeout, ca_cert=ca_cert)
        try:
            client.plans()
            return client
        except AuthenticationFailed:
            client.close()
        client = AdminClient(url, tui_admin_key(data_dir, renew=True, database=database), timeout, ca_cert=ca_cert)
        try:
            client.plans()
        except AuthenticationFailed:
            client.close()
            raise AuthenticationFailed(
                f"The server at {url} does not accept the admin key kept in {data_dir / TUI_KEY_FILE}; "
                "is it serving another data dir? Pass its admin key instead."
            ) from None
        return client
    from appliance.core.specialists import load_specialists

    catalogue = load_specialists(Path(specialists_path).expanduser() if specialists_path else None)
    # Only `serve` creates a data dir.
    return LocalAdmin(Store(data_dir, create=False, database=database), catalogue, url=url)
