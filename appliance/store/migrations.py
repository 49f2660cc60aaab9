"""Schema, created and upgraded by sqlite-utils migrations. Append new steps; never edit old ones."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("alveare")

# name, rpm, per month, tpm, specialists, custom prompts, overage per 1k requests, monthly price
DEFAULT_PLANS = [
    ("solo", 20, 10_000, 40_000, 3, False, 5.0, 49.0),
    ("starter", 100, 100_000, 200_000, 6, False, 4.0, 499.0),
    ("professional", 500, 500_000, 1_000_000, 10, True, 3.0, 1499.0),
    ("scale", 2_000, 2_000_000, 4_000_000, 25, True, 2.0, 2999.0),
]


@migrations()
def m001_plans_accounts_keys(db: Database) -> None:
    db["plans"].create(
        {
            "name": str,
            "requests_per_minute": int,
            "requests_per_month": int,
            "tokens_per_minute": int,
            "specialists_allowed": int,
            "custom_prompts": int,
            "overage_per_1k_requests": float,
            "monthly_price": float,
        },
        pk="name",
    )
    db["plans"].insert_all(
        dict(
            zip(
                (
                    "name",
                    "requests_per_minute",
                    "requests_per_month",
                    "tokens_per_minute",
                    "specialists_allowed",
                    "custom_prompts",
                    "overage_per_1k_requests",
                    "monthly_price",
                ),
                row,
                strict=True,
            )
        )
        for row in DEFAULT_PLANS
    )
    db["accounts"].create(
        {"id": int, "name": str, "plan": str, "spending_cap": float, "created_at": str},
        pk="id",
        foreign_keys=[("plan", "plans", "name")],
        not_null={"name", "plan", "created_at"},
    )
    db["accounts"].create_index(["name"], unique=True)
    db["api_keys"].create(
        {
            "id": int,
            "account_id": int,
            "prefix": str,
            "hash": str,
            "test": int,
            "admin": int,
            "created_at": str,
            "revoked_at": str,
            "last_used_at": str,
        },
        pk="id",
        foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "prefix", "hash", "test", "admin", "created_at"},
    )
    db["api_keys"].create_index(["hash"], unique=True)
    db["api_keys"].create_index(["prefix"])


@migrations()
def m002_usage_prompts_alerts(db: Database) -> None:
    # NULL: the first `specialists_allowed` built-in specialists; else a comma-separated list.
    db["accounts"].add_column("specialists", str)
    db["usage"].create(
        {
            "id": int,
            "key_id": int,
            "account_id": int,
            "endpoint": str,
            "specialist": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "latency_ms": int,
            "status": int,
            "created_at": str,
            # calendar month in UTC, "2026-03"
            "period": str,
            "test": int,
            # 1 for a live request that succeeded: what counts toward the monthly quota
            "billable": int,
            # 1 for a billable request beyond the plan's monthly requests
            "overage": int,
        },
        pk="id",
        foreign_keys=[("key_id", "api_keys", "id"), ("account_id", "accounts", "id")],
        not_null={"key_id", "account_id", "endpoint", "status", "created_at", "period", "test", "billable", "overage"},
    )
    db["usage"].create_index(["account_id", "period", "billable"])
    db["custom_prompts"].create(
        {"account_id": int, "specialist": str, "system_prompt": str, "updated_at": str},
        pk=("account_id", "specialist"),
        foreign_keys=[("account_id", "accounts", "id")],
        not_null={"system_prompt", "updated_at"},
    )
    db["alert_events"].create(
        {
            "id": int,
            "account_id": int,
            "period": str,
            "threshold": int,
            "requests_used": int,
            "requests_limit": int,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("account_id", "accounts", "id")],
        not_null={"account_id", "period", "threshold", "requests_used", "requests_limit", "created_at"},
    )
    db["alert_events"].create_index(["account_id", "period", "threshold"], unique=True)


@migrations()
def m003_specialist_overrides(db: Database) -> None:
    # An admin's change to a specialist's defaults; NULL keeps specialists.toml's value.
    db["specialist_overrides"].create(
        {
            "specialist": str,
            "system_prompt": str,
            "temperature": float,
            "top_p": float,
            "max_tokens": int,
            "updated_at": str,
        },
        pk="specialist",
        not_null={"updated_at"},
    )
    # Usage per key (the keys list) and per period across accounts (the admin usage breakdown).
    db["usage"].create_index(["key_id"])
    db["usage"].create_index(["period"])


@migrations()
def m004_auth_version(db: Database) -> None:
    # A counter that every change to what a key authenticates as bumps, whichever process makes it
    # (the server, the CLI or the TUI on the data dir): the server's in-memory key cache compares it
    # per request and starts again when it moved. Usage writes (a key's last use) leave it alone.
    db.execute("CREATE TABLE auth_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    db.execute("INSERT INTO auth_version (id, version) VALUES (1, 0)")
    bump = "BEGIN UPDATE auth_version SET version = version + 1 WHERE id = 1; END"
    for name, event in [
        ("keys_changed", "UPDATE OF revoked_at, hash, account_id, admin, test ON api_keys"),
        ("keys_deleted", "DELETE ON api_keys"),
        ("accounts_changed", "UPDATE ON accounts"),
        ("accounts_deleted", "DELETE ON accounts"),
        ("plans_changed", "UPDATE ON plans"),
        ("plans_deleted", "DELETE ON plans"),
    ]:
        db.execute(f"CREATE TRIGGER auth_{name} AFTER {event} {bump}")


# The fair scheduler's weight of each built-in plan; a plan an admin made gets its base plan's.
DEFAULT_SHARE_WEIGHTS = {"solo": 1, "starter": 2, "professional": 4, "scale": 8}


@migrations()
def m005_plan_share_weight(db: Database) -> None:
    db["plans"].add_column("share_weight", int, not_null_default=1)
    for name, weight in DEFAULT_SHARE_WEIGHTS.items():
        db.execute("UPDATE plans SET share_weight = ? WHERE name = ?", [weight, name])


@migrations()
def m006_audit_log(db: Database) -> None:
    # Admin actions, hash-chained (appliance.store.audit): rows are appended in the same transaction
    # as the action they record, and never changed or removed, which the triggers refuse.
    db["audit_log"].create(
        {
            "id": int,
            "at": str,
            "actor": str,
            "action": str,
            "target": str,
            # compact JSON, sorted keys: hashed as stored
            "change": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="id",
        not_null={"at", "actor", "action", "target", "change", "prev_hash", "hash"},
    )
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


@migrations()
def m007_shared_limits(db: Database) -> None:
    # A cluster's rate limits and quota holds (appliance/store/shared_limits.py): used on PostgreSQL
    # only, where several nodes must agree; a single box keeps them in memory. Made here too, so both
    # back ends have the same tables.
    db["rate_limits"].create({"key_id": int, "requests_tat": float, "tokens_tat": float}, pk="key_id")
    db["quota_ledger"].create(
        {"account_id": int, "period": str, "used": int, "reserved": int},
        pk=("account_id", "period"),
        not_null={"used", "reserved"},
    )


@migrations()
def m008_nodes(db: Database) -> None:
    # The appliances on this store, by heartbeat (appliance/store/nodes.py); `heartbeat` is the
    # database's clock in seconds since the epoch.
    db["nodes"].create(
        {
            "id": str,
            "url": str,
            "version": str,
            "model": str,
            "slots_total": int,
            "slots_busy": int,
            "queue_depth": int,
            "tokens_per_second": float,
            "started_at": str,
            "stopped": int,
            "heartbeat": float,
        },
        pk="id",
    )


@migrations()
def m009_quota_holds(db: Database) -> None:
    # Each node's share of quota_ledger.reserved (shared_limits.py): given back when a killed node
    # starts again, or when a node has been silent long enough.
    db["quota_holds"].create(
        {"node": str, "account_id": int, "period": str, "n": int},
        pk=("node", "account_id", "period"),
        not_null={"n"},
    )


@migrations()
def m010_committed_batches(db: Database) -> None:
    # One row per batch the writer commits where the connection can be lost (PostgreSQL): a batch
    # whose COMMIT got no answer is looked up here before its kept writes run again (database.py).
    db["committed_batches"].create({"token": str, "at": float}, pk="token", not_null={"at"})


def apply(db: Database) -> None:
    migrations.apply(db)
