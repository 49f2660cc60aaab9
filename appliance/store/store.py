"""The one interface to the SQLite file: plans, accounts and API keys.

All access goes through one connection guarded by a lock, so the server's threads and the
event loop never interleave a write. Every call is short; the API awaits writes in a
worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from appliance import security
from appliance.errors import Conflict, InvalidRequest, NotFound
from appliance.store import migrations
from appliance.store.records import Account, CreatedKey, KeyInfo, Plan, Principal

DB_FILE = "alveare.db"
SECRET_FILE = "key-secret"
ADMIN_ACCOUNT = "admin"
MAX_ACTIVE_KEYS = 5


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self._secret = security.load_or_create_secret(data_dir / SECRET_FILE)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        self._db = Database(conn)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            migrations.apply(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # plans -----------------------------------------------------------------
    def plans(self) -> list[Plan]:
        with self._lock:
            return [self._plan(r) for r in self._db["plans"].rows_where(order_by="requests_per_minute")]

    def plan(self, name: str) -> Plan:
        with self._lock:
            rows = list(self._db["plans"].rows_where("name = ?", [name.lower()]))
        if not rows:
            known = ", ".join(p.name for p in self.plans())
            raise NotFound(f"No plan named {name!r}. Plans: {known}.", param="plan", code="plan_not_found")
        return self._plan(rows[0])

    @staticmethod
    def _plan(row: dict[str, Any]) -> Plan:
        return Plan(**{**row, "custom_prompts": bool(row["custom_prompts"])})

    # accounts --------------------------------------------------------------
    def create_account(self, name: str, plan: str = "starter") -> Account:
        name = name.strip()
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidRequest("An account name is 1 to 64 letters, digits, '-', '_' or '.'.", param="name")
        plan_row = self.plan(plan)
        with self._lock:
            if self._db["accounts"].count_where("name = ?", [name]):
                raise Conflict(f"An account named {name!r} already exists.", param="name")
            self._db["accounts"].insert(
                {"name": name, "plan": plan_row.name, "spending_cap": None, "created_at": _now()}
            )
        return self.account(name)

    def account(self, name: str) -> Account:
        with self._lock:
            rows = list(self._db["accounts"].rows_where("name = ?", [name]))
        if not rows:
            raise NotFound(f"No account named {name!r}.", param="account", code="account_not_found")
        return Account(**rows[0])

    def accounts(self) -> list[Account]:
        with self._lock:
            return [Account(**r) for r in self._db["accounts"].rows_where(order_by="id")]

    # keys ------------------------------------------------------------------
    def create_key(self, account: str, *, test: bool = False, admin: bool = False) -> CreatedKey:
        acct = self.account(account)
        with self._lock, self._db.conn:
            active = self._db["api_keys"].count_where("account_id = ? AND revoked_at IS NULL", [acct.id])
            if active >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"Account {account!r} already has {MAX_ACTIVE_KEYS} active keys, the most allowed. "
                    "Revoke one before creating another.",
                    code="too_many_keys",
                )
            key = security.generate_key(test=test)
            self._db["api_keys"].insert(
                {
                    "account_id": acct.id,
                    "prefix": security.display_prefix(key),
                    "hash": security.hash_key(self._secret, key),
                    "test": int(test),
                    "admin": int(admin),
                    "created_at": _now(),
                    "revoked_at": None,
                    "last_used_at": None,
                }
            )
        return CreatedKey(key=key, prefix=security.display_prefix(key), account=acct.name, test=test)

    def keys(self, account: str | None = None) -> list[KeyInfo]:
        sql = (
            "SELECT k.id, k.prefix, a.name AS account, k.test, k.admin, k.created_at, k.revoked_at,"
            " k.last_used_at FROM api_keys k JOIN accounts a ON a.id = k.account_id"
        )
        params: list[Any] = []
        if account is not None:
            self.account(account)
            sql += " WHERE a.name = ?"
            params.append(account)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY k.id", params).fetchall()
        return [
            KeyInfo(
                id=r[0],
                prefix=r[1],
                account=r[2],
                test=bool(r[3]),
                admin=bool(r[4]),
                created_at=r[5],
                revoked_at=r[6],
                last_used_at=r[7],
            )
            for r in rows
        ]

    def revoke_key(self, prefix: str) -> KeyInfo:
        if len(prefix) < 12:
            raise InvalidRequest("Give at least 12 characters of the key prefix, e.g. alv_live_AbC.", param="prefix")
        matches = [k for k in self.keys() if k.prefix.startswith(prefix) and k.revoked_at is None]
        if not matches:
            raise NotFound(f"No active key starts with {prefix!r}.", param="prefix", code="key_not_found")
        if len(matches) > 1:
            raise Conflict(
                f"{len(matches)} active keys start with {prefix!r}; give more of the prefix.", param="prefix"
            )
        with self._lock, self._db.conn:
            self._db["api_keys"].update(matches[0].id, {"revoked_at": _now()})
        return next(k for k in self.keys() if k.id == matches[0].id)

    def has_admin_key(self) -> bool:
        with self._lock:
            return bool(self._db["api_keys"].count_where("admin = 1 AND revoked_at IS NULL"))

    def ensure_admin(self) -> CreatedKey | None:
        """On first start: an admin account with one admin key, returned once so it can be printed."""
        if self.has_admin_key():
            return None
        try:
            self.account(ADMIN_ACCOUNT)
        except NotFound:
            self.create_account(ADMIN_ACCOUNT, "scale")
        return self.create_key(ADMIN_ACCOUNT, admin=True)

    def authenticate(self, key: str) -> Principal | None:
        """The principal for a raw key, or None for an unknown or revoked one.

        The look-up is by keyed hash: equality on a hash of the secret, so timing reveals
        nothing about the key itself.
        """
        digest = security.hash_key(self._secret, key)
        with self._lock:
            row = self._db.execute(
                "SELECT k.id, k.prefix, k.test, k.admin, a.id, a.name, a.plan, k.hash FROM api_keys k"
                " JOIN accounts a ON a.id = k.account_id WHERE k.hash = ? AND k.revoked_at IS NULL",
                [digest],
            ).fetchone()
        if row is None or not security.constant_time_equal(row[7], digest):
            return None
        return Principal(
            key_id=row[0],
            key_prefix=row[1],
            test=bool(row[2]),
            admin=bool(row[3]),
            account_id=row[4],
            account=row[5],
            plan=self.plan(row[6]),
        )
