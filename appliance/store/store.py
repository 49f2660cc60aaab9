"""The one interface to the store: plans, accounts, keys, usage, custom prompts, alerts, audit log.

`Store` composes one part per job (plans_accounts, keys, usage, prompts, audit), all standing on
database.StoreBase: every write goes through one writer thread, committed in batches, and an
awaited write is durable; reads use other connections that never wait for the writer. The state
lives in SQLite in the data dir, or in PostgreSQL when `database` is a postgresql:// URL
(backends.py); the parts read and write it the same way on both (sql.py). The CLI uses the same
methods synchronously; the server awaits the futures off the event loop.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from appliance.core.errors import InvalidRequest
from appliance.core.settings_table import is_postgres_url
from appliance.store import backup
from appliance.store.audit import AuditLog
from appliance.store.backends import PostgresBackend, SqliteBackend
from appliance.store.keys import Keys
from appliance.store.nodes import Nodes
from appliance.store.plans_accounts import PlansAndAccounts
from appliance.store.prompts import Prompts
from appliance.store.records import BackupInfo
from appliance.store.usage import Usage


class Store(Keys, Usage, Prompts, PlansAndAccounts, AuditLog, Nodes):
    def __init__(self, data_dir: Path, *, create: bool = True, database: str | None = None) -> None:
        """Open the store: in `data_dir`'s SQLite file, or in the PostgreSQL database `database` names.
        Only `alveare serve` creates a data dir; the admin tools pass create=False, so a mistyped data
        dir is an error rather than a new, empty store."""
        if database and not is_postgres_url(database):
            raise InvalidRequest(
                f"--database takes a postgresql:// URL (got {database.split(':', 1)[0]!r}); without it the "
                "store is SQLite in the data dir.",
                param="database",
            )
        if database and create:  # the node's own files (its certificate, models) stay in the data dir
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._backend = PostgresBackend(database) if database else SqliteBackend(data_dir, create=create)
        self.dialect = self._backend.dialect
        self.where = self._backend.where
        self._secret = self._backend.secret
        self._writer = self._backend.writer
        self._read = self._backend.read

    @property
    def path(self) -> Path:
        """The SQLite file (a single box's store); a PostgreSQL store has none."""
        if not isinstance(self._backend, SqliteBackend):
            raise InvalidRequest("This store is in PostgreSQL: it has no file.", param="database")
        return self._backend.path

    def close(self) -> None:
        self._backend.close()

    def backup(self, path: str | Path) -> BackupInfo:
        """A consistent copy of the database, taken while it is in use (SQLite's backup API), checked
        with PRAGMA integrity_check, at `path` (a new file, or a time-stamped one in a folder).
        Writes already queued (usage records) are committed first, so the copy includes them."""
        if not isinstance(self._backend, SqliteBackend):
            raise InvalidRequest(
                "This store is in PostgreSQL: back it up with PostgreSQL's own tools (pg_dump, or the "
                "server's continuous archiving), which copy every node's state at once.",
                param="path",
            )
        self.flush().result()
        return backup.backup(self._backend.path, path)

    def flush(self) -> Future[None]:
        """Resolves once every write submitted before it is committed."""
        return self._writer.submit(lambda db: None)
