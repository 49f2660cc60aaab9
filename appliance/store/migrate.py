"""`alveare admin migrate-db`: a single box's SQLite store copied into PostgreSQL, so an existing
install can grow into a cluster. Every table is copied from one snapshot (one SQLite read
transaction) in one PostgreSQL transaction, ids and audit hashes as they are, with the box's
key-hashing secret, so every key, the usage history and the audit chain carry over unchanged.
Then each table is read back from PostgreSQL and compared with the snapshot by row count and a
SHA-256 over its rows in key order; any difference and nothing is kept. The audit log gets a row
for the migration itself, after the box's own.

The target must be a fresh database (the migrations' own rows only): merging two stores' ids and
secrets is not a copy.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from appliance.core.errors import Conflict, NotFound
from appliance.store.audit import LOCAL_ACTOR, append
from appliance.store.backends import SECRET_FILE, PostgresBackend, shown_url
from appliance.store.database import DB_FILE, connect
from appliance.store.sql import Db

# The tables copied, parents first, each with the columns that order its rows.
TABLES: tuple[tuple[str, str], ...] = (
    ("plans", "name"),
    ("accounts", "id"),
    ("api_keys", "id"),
    ("usage", "id"),
    ("custom_prompts", "account_id, specialist"),
    ("alert_events", "id"),
    ("specialist_overrides", "specialist"),
    ("audit_log", "id"),
)
# Tables with identity ids, whose sequences must continue after the copied rows.
IDENTITIES = ("accounts", "api_keys", "usage", "alert_events")
# Rows written per INSERT batch.
BATCH = 1000


class TableCopy(msgspec.Struct, frozen=True):
    table: str
    rows: int
    sha256: str


class Migrated(msgspec.Struct, frozen=True):
    source: str
    target: str
    tables: list[TableCopy]


def _value(v: Any) -> Any:
    # Both back ends give ints, text and None alike; a float is compared by its exact value.
    if isinstance(v, float):
        return v.hex() if math.isfinite(v) else repr(v)
    return v


def digest(rows: list[tuple]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(msgspec.json.encode([_value(v) for v in row]))
        h.update(b"\n")
    return h.hexdigest()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def migrate(data_dir: Path, url: str, *, actor: str = LOCAL_ACTOR) -> Migrated:
    """Copy the store in `data_dir` into the fresh PostgreSQL database at `url`; returns what was
    copied, verified. Raises Conflict when the target holds a store already."""
    path = data_dir / DB_FILE
    if not path.is_file():
        raise NotFound(f"There is no Alveare store at {path}: give the data dir of the box to migrate (--data-dir).")
    secret = (data_dir / SECRET_FILE).read_bytes()
    target = PostgresBackend(url)  # creates the schema if the database is empty
    try:
        source = connect(path)
        try:
            source.execute("BEGIN")  # one snapshot of every table (WAL: the box's writer is not held)
            copied = _copy(source, target, secret, actor)
            source.execute("COMMIT")
        finally:
            source.close()
    finally:
        target.close()
    return Migrated(source=str(path), target=shown_url(url), tables=copied)


def _copy(source: sqlite3.Connection, target: PostgresBackend, secret: bytes, actor: str) -> list[TableCopy]:
    import psycopg

    snapshot: dict[str, tuple[list[str], list[tuple]]] = {}
    for table, order in TABLES:
        cols = _columns(source, table)
        snapshot[table] = (cols, source.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall())
    with psycopg.connect(target.url) as conn:  # one transaction: committed whole, or not at all
        _check_fresh(conn, target.where)
        conn.execute("DELETE FROM plans")  # the migrations' seeded plans: the box's own replace them
        for table, _ in TABLES:
            cols, rows = snapshot[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
            with conn.cursor() as cur:
                for start in range(0, len(rows), BATCH):
                    cur.executemany(sql, rows[start : start + BATCH])
        for table in IDENTITIES:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
            )
        conn.execute("UPDATE store_secret SET secret = %s WHERE id = 1", [secret.hex()])
        copied = []
        for table, order in TABLES:
            cols, rows = snapshot[table]
            back = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
            want, got = digest(rows), digest([tuple(r) for r in back])
            if len(back) != len(rows) or got != want:
                raise Conflict(
                    f"The copy of {table} does not match the box's ({len(back)} rows read back, {len(rows)} "
                    "copied): nothing was kept."
                )
            copied.append(TableCopy(table, len(rows), want))
        counts = {c.table: c.rows for c in copied}
        append(Db(conn, "postgresql"), actor, "store.migrate", shown_url(target.url), counts)
    return copied


def _check_fresh(conn: Any, where: str) -> None:
    held = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _ in TABLES if t != "plans"}
    held = {t: n for t, n in held.items() if n}
    if held:
        found = ", ".join(f"{n} {t}" for t, n in held.items())
        raise Conflict(
            f"The database at {where} holds a store already ({found}): migrate-db copies into a fresh database "
            "only. Create an empty one (createdb) and give its URL."
        )
