"""The one interface to the SQLite file: plans, accounts, keys, usage, custom prompts, alerts, audit log.

`Store` composes one part per job (plans_accounts, keys, usage, prompts, audit), all standing on
database.StoreBase: every write goes through one writer thread, committed in batches, and an
awaited write is durable; reads use a second connection that never waits for the writer. The
CLI uses the same methods synchronously; the server awaits the futures off the event loop.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

from sqlite_utils import Database

from appliance.core import security
from appliance.core.errors import NotFound
from appliance.store import backup, migrations
from appliance.store.audit import AuditLog
from appliance.store.database import DB_FILE, Writer, connect, make_private
from appliance.store.keys import Keys
from appliance.store.plans_accounts import PlansAndAccounts
from appliance.store.prompts import Prompts
from appliance.store.records import BackupInfo
from appliance.store.usage import Usage

SECRET_FILE = "key-secret"


class Store(Keys, Usage, Prompts, PlansAndAccounts, AuditLog):
    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        """Open the store in `data_dir`. Only `alveare serve` creates one; the admin tools pass
        create=False, so a mistyped data dir is an error rather than a new, empty store."""
        if not create and not (data_dir / DB_FILE).is_file():
            raise NotFound(
                f"There is no Alveare data dir at {data_dir} (no {DB_FILE}). Check --data-dir or "
                "ALVEARE_DATA_DIR; `alveare serve` creates the data dir."
            )
        make_private(data_dir)
        self.path = data_dir / DB_FILE
        self._secret = security.load_or_create_secret(data_dir / SECRET_FILE)
        write_db = Database(connect(self.path))
        write_db.execute("PRAGMA journal_mode=WAL")
        write_db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(write_db)
        self._writer = Writer(write_db)
        self._db = Database(connect(self.path))
        self._lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._db.close()

    def backup(self, path: str | Path) -> BackupInfo:
        """A consistent copy of the database, taken while it is in use (SQLite's backup API), checked
        with PRAGMA integrity_check, at `path` (a new file, or a time-stamped one in a folder).
        Writes already queued (usage records) are committed first, so the copy includes them."""
        self.flush().result()
        return backup.backup(self.path, path)

    def flush(self) -> Future[None]:
        """Resolves once every write submitted before it is committed."""
        return self._writer.submit(lambda db: None)
