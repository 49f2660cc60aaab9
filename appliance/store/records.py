"""Rows the store hands out. Plain Structs: no database handles escape the store."""

from __future__ import annotations

import msgspec


class Plan(msgspec.Struct, frozen=True):
    name: str
    requests_per_minute: int
    requests_per_month: int
    tokens_per_minute: int
    specialists_allowed: int
    custom_prompts: bool
    overage_per_1k_requests: float
    monthly_price: float


class Account(msgspec.Struct, frozen=True):
    id: int
    name: str
    plan: str
    spending_cap: float | None
    created_at: str


class KeyInfo(msgspec.Struct, frozen=True):
    id: int
    prefix: str
    account: str
    test: bool
    admin: bool
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: resolved from a valid API key."""

    key_id: int
    key_prefix: str
    account_id: int
    account: str
    plan: Plan
    test: bool
    admin: bool


class CreatedKey(msgspec.Struct, frozen=True):
    key: str
    prefix: str
    account: str
    test: bool
