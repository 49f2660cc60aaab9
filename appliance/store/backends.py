"""Where the store keeps its state: SQLite in the data dir (one box, the default) or PostgreSQL (a
cluster of appliances sharing one database). Each back end gives the writer its connection, the
reads theirs, and the key-hashing secret; `Store` does the rest the same way on both."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from sqlite_utils import Database

from appliance.core import security
from appliance.core.errors import InvalidRequest, NotFound, StoreUnavailable
from appliance.store import migrations
from appliance.store.database import DB_FILE, Writer, connect, make_private
from appliance.store.sql import Db

log = logging.getLogger("alveare.store")

T = TypeVar("T")
SECRET_FILE = "key-secret"
# Connections each node's read pool may hold: reads are short (a key's look-up, a usage count),
# and the event loop hands them to a few worker threads at a time.
POOL_MAX = 8
# Seconds a read waits for a pooled connection, or a first connection for the database to answer,
# before the request gets a clear 503: no caller waits out its own timeout for an outage.
PG_WAIT_S = 3.0


def shown_url(url: str) -> str:
    """The URL without its password, for logs and status lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, parts.fragment))


class _SqliteSession:
    def __init__(self, path: Path) -> None:
        self.conn = connect(path)
        self._db = Db(self.conn, "sqlite")

    def db(self) -> Db:
        return self._db

    def begin(self) -> None:
        # IMMEDIATE: the write lock now, so two processes on the data dir (the server and the CLI)
        # never both read then write.
        self.conn.execute("BEGIN IMMEDIATE")

    def broken(self) -> bool:
        return False

    def close(self) -> None:
        self.conn.close()


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        if not create and not (data_dir / DB_FILE).is_file():
            raise NotFound(
                f"There is no Alveare data dir at {data_dir} (no {DB_FILE}). Check --data-dir or "
                "ALVEARE_DATA_DIR; `alveare serve` creates the data dir."
            )
        make_private(data_dir)
        self.path = data_dir / DB_FILE
        self.where = str(self.path)
        self.secret = security.load_or_create_secret(data_dir / SECRET_FILE)
        write_db = Database(connect(self.path))
        write_db.execute("PRAGMA journal_mode=WAL")
        write_db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(write_db)
        write_db.close()
        self.writer = Writer(lambda: _SqliteSession(self.path))
        self._read = Db(connect(self.path), "sqlite")
        self._lock = threading.Lock()

    def read(self, fn: Callable[[Db], T]) -> T:
        with self._lock:
            return fn(self._read)

    def close(self) -> None:
        self.writer.close()
        with self._lock:
            self._read.conn.close()


class _PgSession:
    def __init__(self, url: str) -> None:
        self.conn = _connect(url)
        self._db = Db(self.conn, "postgresql")

    def db(self) -> Db:
        return self._db

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def broken(self) -> bool:
        return bool(self.conn.closed or self.conn.broken)

    def close(self) -> None:
        self.conn.close()


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            import psycopg_pool  # noqa: F401
        except ImportError as exc:  # the [postgres] extra is not installed
            raise InvalidRequest(
                "A postgresql:// database needs psycopg: pip install 'alveare[postgres]'.", param="database"
            ) from exc
        from appliance.store import pg_migrations

        self.url = url
        self.where = shown_url(url)
        try:
            with _connect(url) as conn:
                pg_migrations.apply(conn)
                self.secret = _pg_secret(conn)
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc
        self._pool = self._new_pool()
        # Set when a read found the database gone: reads then ask it directly first (_renew).
        self._suspect = False
        self._renewing = threading.Lock()
        self.writer = Writer(lambda: _PgSession(url), self.unavailable, lost=_lost, mark_batches=True)

    def _new_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "connect_timeout": int(PG_WAIT_S)},
            timeout=PG_WAIT_S,
            name="alveare-store",
            open=True,
        )

    def _renew(self, pool: Any) -> Exception | None:
        """After the database was found gone: one direct connection says whether it answers again (the
        pool's own attempts back off to seconds apart while it is down, and a read would wait for the
        next). It does: a new pool replaces `pool` (whose reads in flight finish first), and None;
        it does not: the error, at once."""
        import psycopg

        with self._renewing:
            if self._pool is not pool:  # another read renewed it meanwhile
                return None
            try:
                _connect(self.url).close()
            except psycopg.OperationalError as exc:
                return exc
            self._pool = self._new_pool()
            self._suspect = False
        threading.Thread(target=pool.close, kwargs={"timeout": 30}, name="alveare-store-old-pool", daemon=True).start()
        log.info("store: the database at %s answers again", self.where)
        return None

    def unavailable(self, exc: Exception) -> Exception:
        """A lost or refused connection as the clear 503 it is to a caller; other errors as they are."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if isinstance(exc, psycopg.OperationalError | PoolTimeout):
            return StoreUnavailable(f"The database at {self.where} does not answer: {_first_line(exc)}")
        return exc

    def read(self, fn: Callable[[Db], T]) -> T:
        """`fn` on a pooled connection. One found broken (the database restarted since it was last
        used) has the pool replace every broken one at once (`check`, milliseconds) and `fn` runs
        again: the caller gets the 503 only if the database does not answer now. (A check of each
        connection as it is lent instead left a pool of broken ones waiting seconds for new ones.)"""
        import psycopg
        from psycopg_pool import PoolTimeout

        for attempt in (1, 2):
            conn = None
            if self._suspect and (gone := self._renew(self._pool)) is not None:
                raise self.unavailable(gone) from gone
            pool = self._pool
            try:
                with pool.connection() as conn:
                    return fn(Db(conn, "postgresql"))
            except psycopg.OperationalError as exc:
                if attempt == 1 and conn is not None and conn.broken:
                    pool.check()
                    continue
                self._suspect = True
                raise self.unavailable(exc) from exc
            except PoolTimeout as exc:
                self._suspect = True
                if attempt == 1 and self._renew(pool) is None:
                    continue
                raise self.unavailable(exc) from exc
            except Exception as exc:
                error = self.unavailable(exc)
                if error is exc:
                    raise
                raise error from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.writer.close()
        self._pool.close()


def _connect(url: str) -> Any:
    """A connection of its own (the writer's, the schema's at start, a probe after an outage), in
    autocommit mode, that gives up after PG_WAIT_S."""
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=int(PG_WAIT_S))


def _lost(exc: Exception) -> bool:
    """Whether the connection is gone (the database stopped, restarts, or cannot be reached), as
    opposed to a statement the database refused."""
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


def _pg_secret(conn: Any) -> bytes:
    """The cluster's key-hashing secret, in the database: every node must hash a key alike. Made once;
    `alveare admin migrate-db` puts a single box's secret there instead, so its keys keep working."""
    conn.execute(
        "INSERT INTO store_secret (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        [secrets.token_bytes(32).hex()],
    )
    row = conn.execute("SELECT secret FROM store_secret WHERE id = 1").fetchone()
    return bytes.fromhex(row[0])


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
