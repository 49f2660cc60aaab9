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


def apply(db: Database) -> None:
    migrations.apply(db)
