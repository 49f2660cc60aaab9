"""The audit log: an append-only, hash-chained record of admin actions (who, what, when).

Each row's hash is SHA-256 over the previous row's hash and the row's own fields, so an edited,
removed or reordered row breaks the chain from there on, and `verify_audit` names the first row
where it breaks. A row is appended by `append` inside the same write job as the action it records
(one savepoint, one commit), so the action and its row are durable together or not at all. Triggers
refuse UPDATE and DELETE on the table: changing it takes a deliberate act, which the chain shows.

What a row holds is never a secret: a key by its display prefix, never the key or its hash; a
system prompt by its length and a digest, not its text (the prompt stays in its own table).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from appliance.core.errors import InvalidRequest
from appliance.store import clock
from appliance.store.database import StoreBase
from appliance.store.records import AuditEntry, AuditPage, AuditVerification
from appliance.store.sql import Db

# Who did it, when no admin key did: the admin tools on the data dir with no server (the CLI and
# the TUI through LocalAdmin), and the first start's own setup (`alveare init`, the first `serve`).
LOCAL_ACTOR = "cli-local"
INIT_ACTOR = "init"
# The hash the first row follows.
GENESIS = "0" * 64
MAX_PAGE = 500
# Rows verified per read: the chain is walked in pages, so a long log is never held in memory at once.
VERIFY_BATCH = 1000

_COLUMNS = "id, at, actor, action, target, change, prev_hash, hash"


def canonical(change: Mapping[str, Any]) -> str:
    """The change as stored and hashed: compact JSON with sorted keys."""
    return msgspec.json.encode(change, order="sorted").decode()


def chain_hash(prev_hash: str, row_id: int, at: str, actor: str, action: str, target: str, change: str) -> str:
    """SHA-256 over the previous row's hash and this row's fields, as one JSON array (unambiguous)."""
    body = msgspec.json.encode([prev_hash, row_id, at, actor, action, target, change])
    return hashlib.sha256(body).hexdigest()


def digest(text: str) -> dict[str, Any]:
    """A text's stand-in in a row (a system prompt): its length and the start of its SHA-256."""
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """{field: [old, new]} for the fields that changed (old None when there was no row before)."""
    old = before or {}
    return {f: [old.get(f), after.get(f)] for f in fields if old.get(f) != after.get(f)}


def append(db: Db, actor: str, action: str, target: str, change: Mapping[str, Any]) -> None:
    """Append one row, on the writer's connection inside its transaction (call it from a write job).

    The row's id is the last id + 1, read in the same transaction: SQLite's BEGIN IMMEDIATE makes the
    writer the only one, across processes too, and on PostgreSQL the table's lock does the same across
    nodes, so two appends never follow the same row.
    """
    db.lock("audit_log")
    last = db.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    row_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at, text = clock.now_iso(), canonical(change)
    row = [row_id, at, actor, action, target, text, prev, chain_hash(prev, row_id, at, actor, action, target, text)]
    db.execute(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)


def _entry(row: tuple) -> AuditEntry:
    try:
        change = msgspec.json.decode(row[5])
    except msgspec.DecodeError:
        change = None
    if not isinstance(change, dict):  # a row changed by hand: listed as it is, and verify names it
        change = {"unreadable": row[5]}
    return AuditEntry(
        id=row[0],
        at=row[1],
        actor=row[2],
        action=row[3],
        target=row[4],
        change=change,
        prev_hash=row[6],
        hash=row[7],
    )


class AuditLog(StoreBase):
    def record_audit(self, actor: str, action: str, target: str, change: Mapping[str, Any]) -> None:
        """A row for an admin action that writes nothing else to the store (a backup), committed on return."""
        self._write(lambda db: append(db, actor, action, target, change))

    def audit_log(self, *, limit: int = 50, before: int | None = None) -> AuditPage:
        """The newest `limit` rows (1 to 500), newest first; `before`: only rows older than that id."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.", param="limit")
        if before is not None and (isinstance(before, bool) or not isinstance(before, int) or before < 1):
            raise InvalidRequest("before must be a row id (a whole number of at least 1).", param="before")
        sql = f"SELECT {_COLUMNS} FROM audit_log"
        params: list[Any] = []
        if before is not None:
            sql += " WHERE id < ?"
            params.append(before)
        rows = self._rows(sql + " ORDER BY id DESC LIMIT ?", [*params, limit + 1])
        entries = [_entry(r) for r in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(data=entries, has_more=more, next_before=entries[-1].id if more else None)

    def verify_audit(self) -> AuditVerification:
        """Walk the chain from the first row: every row must follow the one before it (its prev_hash is
        that row's hash; the first follows GENESIS) and hash to its own hash. Names the first row that
        does not: an edited row fails its own hash; a removed or reordered one fails the next row's link."""
        prev, after, count = GENESIS, 0, 0
        while True:
            rows = self._rows(
                f"SELECT {_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?", [after, VERIFY_BATCH]
            )
            for row_id, at, actor, action, target, change, prev_hash, stored in rows:
                problem = ""
                if prev_hash != prev:
                    problem = (
                        "it does not follow the row before it (a row before it was removed, reordered or changed)"
                        if count
                        else "it is not the row the log began with (rows before it were removed)"
                    )
                elif chain_hash(prev_hash, row_id, at, actor, action, target, change) != stored:
                    problem = "its contents do not match its hash (it was changed after it was written)"
                if problem:
                    return AuditVerification(ok=False, rows=count, head=prev, bad_row=row_id, problem=problem)
                prev, after, count = stored, row_id, count + 1
            if len(rows) < VERIFY_BATCH:
                return AuditVerification(ok=True, rows=count, head=prev, bad_row=None, problem="")
