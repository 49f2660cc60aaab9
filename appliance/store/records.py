"""Rows the store hands out. Plain Structs: no database handles escape the store."""

from __future__ import annotations

from typing import Any

import msgspec


class BillingPlan(msgspec.Struct, frozen=True):
    name: str
    requests_per_minute: int
    requests_per_month: int
    tokens_per_minute: int
    specialists_allowed: int
    custom_prompts: bool
    overage_per_1k_requests: float
    monthly_price: float
    # The plan's weight in the fair scheduler: an account's share of the hive beside busy accounts on
    # other plans is proportional to it (engine/fairness.py).
    share_weight: int = 1


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
    # Every usage record of the key, all periods and statuses.
    requests: int = 0


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: resolved from a valid API key."""

    key_id: int
    key_prefix: str
    account_id: int
    account: str
    plan: BillingPlan
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


class AccountOverview(msgspec.Struct, frozen=True):
    """An account with its period usage against the plan, for the admin screens."""

    account: Account
    usage: UsageSummary
    # The highest quota alert reached this period: 0 (none), 75, 90 or 100.
    alert_level: int
    active_keys: int


class UsageRow(msgspec.Struct, frozen=True):
    """Usage of one account, key (by prefix) or specialist in a period."""

    name: str
    requests: int
    tokens: int
    failed: int
    test: int


class DailyUsage(msgspec.Struct, frozen=True):
    day: str  # YYYY-MM-DD (UTC)
    requests: int
    tokens: int
    failed: int


class UsageBreakdown(msgspec.Struct, frozen=True):
    """A period's usage (of all accounts or one), grouped four ways."""

    period: str
    account: str | None
    by_account: list[UsageRow]
    by_key: list[UsageRow]
    by_specialist: list[UsageRow]
    by_day: list[DailyUsage]


class SpecialistOverride(msgspec.Struct, frozen=True):
    """An admin's change to a specialist's defaults, kept in the database (None: the file's value)."""

    specialist: str
    system_prompt: str | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    updated_at: str


class BackupInfo(msgspec.Struct, frozen=True):
    """A finished backup: where it is, and what the copy was checked to hold."""

    path: str
    bytes: int
    created_at: str
    # PRAGMA integrity_check of the copy: always "ok" (a copy that fails it is not kept).
    integrity: str
    accounts: int
    keys: int
    usage_records: int


class AuditEntry(msgspec.Struct, frozen=True):
    """One admin action in the audit log: never changed or removed once written."""

    id: int
    at: str  # UTC
    # The admin key's display prefix (the admin API), "cli-local" (the data dir, no server) or
    # "init" (the first start's own setup).
    actor: str
    # What was done, as "area.verb": key.create, key.revoke, plan.create, plan.update, account.create,
    # account.update, prompt.set, prompt.reset, specialist.set, specialist.reset, backup.
    action: str
    # What it was done to: a key prefix, a plan, an account, "account/specialist", a specialist, a path.
    target: str
    # What changed: {field: [old, new]} for an update, the new values for a creation; never a secret.
    change: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(msgspec.Struct, frozen=True):
    """A page of the audit log, newest first."""

    data: list[AuditEntry]
    has_more: bool
    # Pass as `before` for the next, older page; None on the last page.
    next_before: int | None


class AuditVerification(msgspec.Struct, frozen=True):
    """The audit log's chain, walked from its first row."""

    ok: bool
    # The rows found sound (all of them when ok), and the hash of the last of them: note it down, and
    # a later check whose chain no longer passes through it shows rows removed from the end.
    rows: int
    head: str
    # The first row that breaks the chain, and how; None and "" when ok.
    bad_row: int | None
    problem: str
