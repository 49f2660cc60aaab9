"""SQLite persistence behind one interface, `Store`."""

from appliance.store.records import (
    Account,
    AlertEvent,
    CreatedKey,
    CustomPrompt,
    KeyInfo,
    Plan,
    Principal,
    UsageRecord,
    UsageSummary,
)
from appliance.store.store import Store, current_period, now_iso, period_bounds

__all__ = [
    "Account",
    "AlertEvent",
    "CreatedKey",
    "CustomPrompt",
    "KeyInfo",
    "Plan",
    "Principal",
    "Store",
    "UsageRecord",
    "UsageSummary",
    "current_period",
    "now_iso",
    "period_bounds",
]
