"""Time in the store: the UTC timestamps it writes and the billing period (a calendar month).

The store's modules call `clock.now_iso()` through this module, so one patch here (the TUI
tests' frozen clock) reaches every timestamp the store writes.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from appliance.core.errors import InvalidRequest


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_period(at: datetime | None = None) -> str:
    """The billing period: the calendar month in UTC, as "2026-03"."""
    return (at or datetime.now(UTC)).strftime("%Y-%m")


def period_bounds(period: str) -> tuple[str, str]:
    """("2026-03-01T00:00:00Z", "2026-03-31T23:59:59Z") for "2026-03"."""
    try:
        year, month = (int(x) for x in period.split("-"))
        last = calendar.monthrange(year, month)[1]
    except (ValueError, calendar.IllegalMonthError):
        raise InvalidRequest(f"A period is a month like 2026-03, not {period!r}.", param="period") from None
    return f"{year:04d}-{month:02d}-01T00:00:00Z", f"{year:04d}-{month:02d}-{last:02d}T23:59:59Z"
