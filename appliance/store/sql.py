"""The store's SQL, one spelling for both back ends: `Db` wraps one DB-API connection (sqlite3's or
psycopg's) and takes `?` placeholders everywhere; the PostgreSQL side turns them into `%s`.

The statements the store writes are chosen to mean the same on SQLite and PostgreSQL (`INSERT ...
ON CONFLICT`, `RETURNING`, `count(*)`, `substr`, `coalesce`), so the parts of `Store` never ask which
back end they are on; the few things that differ (the placeholder, taking a table's write lock) are
methods here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgresql"]
# PostgreSQL's clock in seconds since the epoch (a float): the one clock every node of a cluster reads.
PG_NOW_S = "extract(epoch FROM clock_timestamp())::float8"


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled). The store's SQL never holds a `?`
    or `%` inside a string literal, so no quoting needs reading."""
    return sql.replace("%", "%%").replace("?", "%s")


class Db:
    """One connection, inside a write job's transaction or a read."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if self.dialect == "postgresql":
            return self.conn.execute(to_pyformat(sql), list(params))
        return self.conn.execute(sql, list(params))

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        row = self.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor: Any = self.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count(self, table: str, where: str = "1 = 1", params: Sequence[Any] = ()) -> int:
        return int(self.all(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])

    def insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row; returns its `id`."""
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        found = self.one(f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id", list(row.values()))
        assert found is not None
        return int(found[0])

    def upsert(self, table: str, row: dict[str, Any], pk: Iterable[str]) -> None:
        """Insert the row, or update the row with its primary key to these values."""
        keys = list(pk)
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        rest = [c for c in row if c not in keys]
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
        self.execute(
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(keys)}) {action}",
            list(row.values()),
        )

    def update(self, table: str, row_id: Any, values: dict[str, Any], pk: str = "id") -> None:
        sets = ", ".join(f"{c} = ?" for c in values)
        self.execute(f"UPDATE {table} SET {sets} WHERE {pk} = ?", [*values.values(), row_id])

    def now_s(self) -> str:
        """SQL for the database's clock in seconds since the epoch (a float): the one clock every
        node of a cluster reads."""
        if self.dialect == "postgresql":
            return PG_NOW_S
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def lock(self, table: str) -> None:
        """Take `table`'s write lock for the rest of the transaction (PostgreSQL: other nodes' writers
        wait; SQLite's BEGIN IMMEDIATE already made this writer the only one)."""
        if self.dialect == "postgresql":
            self.conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
