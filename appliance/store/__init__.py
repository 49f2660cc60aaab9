"""SQLite persistence behind one interface, `Store`."""

from appliance.store.audit import INIT_ACTOR, LOCAL_ACTOR
from appliance.store.clock import current_period, now_iso, period_bounds
from appliance.store.keys import ADMIN_ACCOUNT, MAX_ACTIVE_KEYS
from appliance.store.records import (
    Account,
    AccountOverview,
    AlertEvent,
    AuditEntry,
    AuditPage,
    AuditVerification,
    BackupInfo,
    BillingPlan,
    CreatedKey,
    CustomPrompt,
    DailyUsage,
    KeyInfo,
    Principal,
    SpecialistOverride,
    UsageBreakdown,
    UsageRecord,
    UsageRow,
    UsageSummary,
)
from appliance.store.store import Store

__all__ = [
    "ADMIN_ACCOUNT",
    "INIT_ACTOR",
    "LOCAL_ACTOR",
    "MAX_ACTIVE_KEYS",
    "Account",
    "AccountOverview",
    "AlertEvent",
    "AuditEntry",
    "AuditPage",
    "AuditVerification",
    "BackupInfo",
    "BillingPlan",
    "CreatedKey",
    "CustomPrompt",
    "DailyUsage",
    "KeyInfo",
    "Principal",
    "SpecialistOverride",
    "Store",
    "UsageBreakdown",
    "UsageRecord",
    "UsageRow",
    "UsageSummary",
    "current_period",
    "now_iso",
    "period_bounds",
]
