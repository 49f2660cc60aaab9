"""API keys: creating, listing and revoking them, the admin key, and authenticating a key."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from appliance.core import security
from appliance.core.errors import Conflict, InvalidRequest, NotFound
from appliance.store import clock
from appliance.store.audit import INIT_ACTOR, append
from appliance.store.plans_accounts import PlansAndAccounts, note_key_use
from appliance.store.records import BillingPlan, CreatedKey, KeyInfo, Principal
from appliance.store.sql import Db

ADMIN_ACCOUNT = "admin"
MAX_ACTIVE_KEYS = 5


class Keys(PlansAndAccounts):
    # keys ------------------------------------------------------------------
    def create_key(
        self, account: str, *, test: bool = False, admin: bool = False, actor: str | None = None
    ) -> CreatedKey:
        acct = self.account(account)
        key = security.generate_key(test=test)
        prefix = security.display_prefix(key)

        def job(db: Db) -> None:
            # Admin keys (the first-run key, the TUI's key) are not apps' keys: the limit is on the others.
            active = db.count("api_keys", "account_id = ? AND revoked_at IS NULL AND admin = 0", [acct.id])
            if not admin and active >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"Account {account!r} already has {MAX_ACTIVE_KEYS} active keys, the most allowed. "
                    "Revoke one before creating another.",
                    code="too_many_keys",
                )
            db.insert(
                "api_keys",
                {
                    "account_id": acct.id,
                    "prefix": prefix,
                    "hash": security.hash_key(self._secret, key),
                    "test": int(test),
                    "admin": int(admin),
                    "created_at": clock.now_iso(),
                    "revoked_at": None,
                    "last_used_at": None,
                },
            )
            if actor is not None:  # the prefix only: never the key or its hash
                append(db, actor, "key.create", prefix, {"account": acct.name, "test": test, "admin": admin})

        self._write(job)
        return CreatedKey(key=key, prefix=prefix, account=acct.name, test=test)

    def keys(self, account: str | None = None) -> list[KeyInfo]:
        sql = (
            "SELECT k.id, k.prefix, a.name AS account, k.test, k.admin, k.created_at, k.revoked_at,"
            " k.last_used_at, (SELECT count(*) FROM usage u WHERE u.key_id = k.id)"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
        )
        params: list[Any] = []
        if account is not None:
            self.account(account)
            sql += " WHERE a.name = ?"
            params.append(account)
        rows = self._rows(sql + " ORDER BY k.id", params)
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
                requests=r[8],
            )
            for r in rows
        ]

    def revoke_key(self, prefix: str, *, actor: str | None = None) -> KeyInfo:
        if len(prefix) < 12:
            raise InvalidRequest("Give at least 12 characters of the key prefix, e.g. alv_live_AbC.", param="prefix")
        matches = [k for k in self.keys() if k.prefix.startswith(prefix) and k.revoked_at is None]
        if not matches:
            raise NotFound(f"No active key starts with {prefix!r}.", param="prefix", code="key_not_found")
        if len(matches) > 1:
            raise Conflict(
                f"{len(matches)} active keys start with {prefix!r}; give more of the prefix.", param="prefix"
            )
        key = matches[0]

        def job(db: Db) -> None:
            db.update("api_keys", key.id, {"revoked_at": clock.now_iso()})
            if actor is not None:
                append(db, actor, "key.revoke", key.prefix, {"account": key.account})

        self._write(job)
        return next(k for k in self.keys() if k.id == key.id)

    def mark_key_used(self, key_id: int, at: str | None = None) -> Future[None]:
        """Queue a key's last use (now, unless given); resolves once it is committed."""
        when = at or clock.now_iso()
        return self._writer.submit(lambda db: note_key_use(db, key_id, when))

    def has_admin_key(self) -> bool:
        return bool(self._rows("SELECT count(*) FROM api_keys WHERE admin = 1 AND revoked_at IS NULL")[0][0])

    def ensure_admin(self) -> CreatedKey | None:
        """On first start: an admin account with one admin key, returned once so it can be printed."""
        if self.has_admin_key():
            return None
        try:
            self.account(ADMIN_ACCOUNT)
        except NotFound:
            self.create_account(ADMIN_ACCOUNT, "scale", actor=INIT_ACTOR)
        return self.create_key(ADMIN_ACCOUNT, admin=True, actor=INIT_ACTOR)

    def authenticate(self, key: str) -> Principal | None:
        """The principal for a raw key, or None for an unknown or revoked one.

        The look-up is by keyed hash: equality on a hash of the secret, so timing reveals
        nothing about the key itself.
        """
        return self.principal_for(self.key_digest(key))

    def key_digest(self, key: str) -> str:
        """The keyed hash a key is stored and looked up by (no I/O)."""
        return security.hash_key(self._secret, key)

    def auth_version(self) -> int:
        """Moves whenever what some key authenticates as may have changed (a revocation, an account's or
        a plan's change), by any process: triggers on those tables bump it."""
        return self._rows("SELECT version FROM auth_version WHERE id = 1")[0][0]

    def principal_for(self, digest: str) -> Principal | None:
        """The principal for a key's digest (`key_digest`), or None for an unknown or revoked key."""
        rows = self._rows(
            "SELECT k.id, k.prefix, k.test, k.admin, a.id, a.name, a.spending_cap, a.specialists, k.hash,"
            " p.name, p.requests_per_minute, p.requests_per_month, p.tokens_per_minute, p.specialists_allowed,"
            " p.custom_prompts, p.overage_per_1k_requests, p.monthly_price, p.share_weight"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id JOIN plans p ON p.name = a.plan"
            " WHERE k.hash = ? AND k.revoked_at IS NULL",
            [digest],
        )
        if not rows or not security.constant_time_equal(rows[0][8], digest):
            return None
        row = rows[0]
        plan = BillingPlan(
            name=row[9],
            requests_per_minute=row[10],
            requests_per_month=row[11],
            tokens_per_minute=row[12],
            specialists_allowed=row[13],
            custom_prompts=bool(row[14]),
            overage_per_1k_requests=row[15],
            monthly_price=row[16],
            share_weight=row[17],
        )
        return Principal(
            key_id=row[0],
            key_prefix=row[1],
            test=bool(row[2]),
            admin=bool(row[3]),
            account_id=row[4],
            account=row[5],
            spending_cap=row[6],
            specialists=tuple(row[7].split(",")) if row[7] else None,
            plan=plan,
        )
