"""The store's plumbing, whichever the back end: the one writer thread, the SQLite file's
connections and modes, and `StoreBase`, what every part of `Store` reads and writes through.

Every write goes through one writer thread with its own connection, fed by a queue: writes that
arrive together run in one transaction (each in its own savepoint, so one failing job fails
alone) and their futures resolve only after the commit, so an awaited write is durable. Reads
use other connections (SQLite: a second one, which in WAL mode never waits for the writer;
PostgreSQL: a pool).
"""

from __future__ import annotations

import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, Protocol, TypeVar

from appliance.store.sql import Db

DB_FILE = "alveare.db"
# A batch of writes committed together; bounded so one commit stays short.
MAX_BATCH = 512
# How often writes that must not be lost (usage records) are tried again while the database does
# not answer.
RETRY_S = 1.0
# How long a committed batch's marker is kept: far longer than any outage a kept write waits out.
MARKERS_KEPT_S = 86400.0

log = logging.getLogger("alveare.store")
T = TypeVar("T")


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in the writer; sqlite-utils'
    # atomic() savepoints inside it), never opened implicitly by the sqlite3 module.
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class Session(Protocol):
    """A back end's writer connection: the `Db` jobs run on, and how a transaction begins."""

    def db(self) -> Db: ...

    def begin(self) -> None: ...

    def broken(self) -> bool:
        """Whether the connection is lost (the next batch needs a new one)."""
        ...

    def close(self) -> None: ...


Job = tuple[Callable[[Db], Any], Future, bool]


class Writer:
    """One thread owns the write connection; jobs are callables run on it, batched per commit.
    `connect` makes that connection, again after it was lost (PostgreSQL restarted).

    When the connection is lost (`lost` says so of an error), a batch's jobs submitted with
    keep=True (usage records, a request's quota count) wait and are tried again every RETRY_S until
    the database answers, in their order; the others (an admin's write) fail at once, translated
    (StoreUnavailable), so no caller waits for an answer that cannot come. What still waits when
    the store closes is lost, and logged.

    A connection lost during the COMMIT leaves it unknown whether the batch was written. Where
    connections can be lost, each batch therefore writes a marker row (committed_batches) in its
    transaction, and a batch whose COMMIT got no answer is looked up before its kept jobs run
    again: found, they were written, and their callers get the results they had (a usage record is
    never counted twice)."""

    def __init__(
        self,
        connect: Callable[[], Session],
        translate: Callable[[Exception], Exception] = lambda e: e,
        lost: Callable[[Exception], bool] = lambda e: False,
        *,
        mark_batches: bool = False,
    ) -> None:
        self._connect = connect
        # What a failed batch's callers get for the back end's error (PostgreSQL gone: StoreUnavailable).
        self._translate = translate
        self._lost = lost
        self._session: Session | None = None
        # Markers only where a connection can be lost (PostgreSQL); a local SQLite file cannot.
        self._mark = mark_batches
        # The batch whose COMMIT got no answer: its marker and its kept jobs' outcomes then.
        self._unsure: tuple[str, dict[int, tuple[Any, BaseException | None]]] | None = None
        self._markers_swept = 0.0
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alveare-store-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, job: Callable[[Db], T], *, keep: bool = False) -> Future[T]:
        future: Future[T] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the store is closed"))
            return future
        self._queue.put((job, future, keep))
        return future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        waiting: list[Job] = []  # kept jobs the database did not take yet, oldest first
        while not stop or waiting:
            if waiting:
                batch, waiting = waiting, []
            else:
                item = self._queue.get()
                if item is None:
                    break
                batch = [item]
            while len(batch) < MAX_BATCH and not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            waiting = self._commit(batch)
            if waiting and (stop or self._closed):
                log.error(
                    "store: %d writes were lost: the database did not answer before the store closed", len(waiting)
                )
                failed = RuntimeError("the store closed before the database answered")
                for _, future, _ in waiting:
                    _resolve(future, None, failed)
                waiting = []
            elif waiting:
                time.sleep(RETRY_S)
        if self._session is not None:
            self._session.close()

    def _commit(self, batch: list[Job]) -> list[Job]:
        """Run and commit a batch; returns the kept jobs to try again (the connection was lost)."""
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        marker: str | None = None
        try:
            if self._session is None or self._session.broken():
                if self._session is not None:
                    self._session.close()
                    self._session = None
                self._session = self._connect()
            db = self._session.db()
            batch = self._settle_unsure(db, batch)
            if not batch:
                return []
            self._session.begin()
            for n, (job, future, _) in enumerate(batch):
                name = f"job{n}"
                db.execute(f"SAVEPOINT {name}")  # a failing job rolls back alone
                try:
                    result = job(db)
                except Exception as exc:
                    db.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    outcomes.append((future, None, exc))
                else:
                    outcomes.append((future, result, None))
                db.execute(f"RELEASE SAVEPOINT {name}")
            if self._mark:
                self._sweep_markers(db)
                marker = secrets.token_hex(16)
                db.execute("INSERT INTO committed_batches (token, at) VALUES (?, ?)", [marker, time.time()])
            db.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            failed = self._translate(exc)
            kept = [j for j in batch if j[2]] if self._lost(exc) else []
            if kept and marker is not None and len(outcomes) == len(batch):  # lost in the COMMIT itself
                by_future = {id(f): (result, error) for f, result, error in outcomes}
                self._unsure = (marker, {id(f): by_future[id(f)] for _, f, _ in kept})
            log.error("store: a batch of %d writes failed (%d kept to try again): %s", len(batch), len(kept), exc)
            outcomes = [(future, None, failed) for _, future, keep in batch if not (keep and kept)]
            for future, result, error in outcomes:
                _resolve(future, result, error)
            return kept
        for future, result, error in outcomes:
            _resolve(future, result, error)
        return []

    def _settle_unsure(self, db: Db, batch: list[Job]) -> list[Job]:
        """`batch` less the kept jobs of a batch whose COMMIT got no answer but which was written (its
        marker is there): those callers get the outcomes their jobs had."""
        if self._unsure is None:
            return batch
        marker, outcomes = self._unsure
        written = db.one("SELECT 1 FROM committed_batches WHERE token = ?", [marker]) is not None
        self._unsure = None
        if not written:
            return batch
        log.warning("store: a batch whose COMMIT got no answer was written; its %d kept writes stand", len(outcomes))
        rest = []
        for job in batch:
            if id(job[1]) in outcomes:
                _resolve(job[1], *outcomes[id(job[1])])
            else:
                rest.append(job)
        return rest

    def _sweep_markers(self, db: Db) -> None:
        now = time.time()
        if now - self._markers_swept >= MARKERS_KEPT_S / 24:
            db.execute("DELETE FROM committed_batches WHERE at < ?", [now - MARKERS_KEPT_S])
            self._markers_swept = now

    def _rollback(self) -> None:
        try:
            if self._session is not None and not self._session.broken():
                self._session.db().execute("ROLLBACK")
        except Exception:  # the connection went with it: the next batch makes a new one
            if self._session is not None:
                self._session.close()
            self._session = None


def _resolve(future: Future, result: Any, error: BaseException | None) -> None:
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:  # the waiter gave up (cancelled); the write stands
        pass


def make_private(data_dir: Path) -> None:
    """The data dir 0700 and the database files 0600, new or already there: account names, usage
    and prompts are nobody else's business. SQLite gives -wal and -shm the database file's mode."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = data_dir / DB_FILE
    db.touch(mode=0o600, exist_ok=True)
    for path in (data_dir, db, db.with_name(DB_FILE + "-wal"), db.with_name(DB_FILE + "-shm")):
        mode = 0o700 if path == data_dir else 0o600
        try:
            if path.exists() and path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
        except OSError as exc:  # e.g. a data dir owned by another user: work, but say so
            log.warning("could not restrict %s to mode %o: %s", path, mode, exc)


class Reads(Protocol):
    """A back end's read side: runs a read on a connection of its own, safe from any thread."""

    def __call__(self, fn: Callable[[Db], T]) -> T: ...


class StoreBase:
    """The shared ground of the store's parts (plans and accounts, keys, usage, prompts): the reads,
    the writer, the key secret. `Store.__init__` sets them."""

    _secret: bytes
    _writer: Writer
    _read: Reads

    # plumbing --------------------------------------------------------------
    def _write(self, job: Callable[[Db], T]) -> T:
        """Run a write on the writer thread and wait for its commit (the CLI's way)."""
        return self._writer.submit(job).result()

    def submit(self, job: Callable[[Db], T], *, keep: bool = False) -> Future[T]:
        """Queue a write; keep=True: one that must not be lost, tried again while the database does
        not answer (Writer)."""
        return self._writer.submit(job, keep=keep)

    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple]:
        return self._read(lambda db: db.all(sql, params))

    def _dicts(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self._read(lambda db: db.dicts(sql, params))
