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
    # None: the default set (the first `specialists_allowed` specialists of the catalogue).
    specialists: list[str] | None = None


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
    spending_cap: float | None = None
    specialists: tuple[str, ...] | None = None


class CreatedKey(msgspec.Struct, frozen=True):
    key: str
    prefix: str
    account: str
    test: bool


class UsageRecord(msgspec.Struct, frozen=True):
    """One API request, as metered. Written once, never updated."""

    key_id: int
    account_id: int
    endpoint: str
    specialist: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    status: int
    created_at: str
    period: str
    test: bool
    overage: bool = False

    @property
    def billable(self) -> bool:
        return self.status < 400 and not self.test


class UsageSummary(msgspec.Struct, frozen=True):
    account: str
    plan: str
    period: str
    period_start: str
    period_end: str
    requests_used: int
    requests_limit: int
    tokens_used: int
    by_specialist: dict[str, int]
    overage_requests: int
    spending: float
    spending_cap: float | None
    test_requests: int
    failed_requests: int


class AlertEvent(msgspec.Struct, frozen=True):
    account: str
    period: str
    threshold: int
    requests_used: int
    requests_limit: int
    created_at: str


class CustomPrompt(msgspec.Struct, frozen=True):
    specialist: str
    system_prompt: str
    updated_at: str
