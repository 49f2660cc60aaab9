"""Usage metering and its reports, and the quota alerts raised from it."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from appliance.store import clock
from appliance.store.plans_accounts import PlansAndAccounts, note_key_use
from appliance.store.records import (
    AccountOverview,
    AlertEvent,
    DailyUsage,
    UsageBreakdown,
    UsageRecord,
    UsageRow,
    UsageSummary,
)
from appliance.store.sql import Db


class Usage(PlansAndAccounts):
    # usage -----------------------------------------------------------------
    def record_usage(self, record: UsageRecord) -> Future[None]:
        """Queue one usage record (and the key's last use); resolves once it is committed."""
        return self._writer.submit(lambda db: insert_usage(db, record), keep=True)

    def billable_requests(self, account_id: int, period: str) -> int:
        """The committed requests that count toward the account's monthly quota."""
        return self._rows(
            "SELECT count(*) FROM usage WHERE account_id = ? AND period = ? AND billable = 1", [account_id, period]
        )[0][0]

    def usage_summary(self, account: str, period: str | None = None) -> UsageSummary:
        acct = self.account(account)
        plan = self.plan(acct.plan)
        period = period or clock.current_period()
        start, end = clock.period_bounds(period)
        rows = self._rows(
            "SELECT specialist, billable, test, status < 400 AS ok, count(*), sum(prompt_tokens + completion_tokens)"
            " FROM usage WHERE account_id = ? AND period = ? GROUP BY specialist, billable, test, ok"
            " ORDER BY count(*) DESC",
            [acct.id, period],
        )
        used = tokens = test_requests = failed = 0
        by_specialist: dict[str, int] = {}
        for specialist, billable, test, ok, count, token_sum in rows:
            if billable:
                used += count
                tokens += token_sum or 0
                key = specialist or "unknown"
                by_specialist[key] = by_specialist.get(key, 0) + count
            elif test:
                # Only answered test requests: a refused one (429) or a failed one was no use to anyone.
                if ok:
                    test_requests += count
            else:
                failed += count
        overage = max(0, used - plan.requests_per_month)
        return UsageSummary(
            account=acct.name,
            plan=plan.name,
            period=period,
            period_start=start,
            period_end=end,
            requests_used=used,
            requests_limit=plan.requests_per_month,
            tokens_used=tokens,
            by_specialist=dict(sorted(by_specialist.items(), key=lambda kv: (-kv[1], kv[0]))),
            overage_requests=overage,
            spending=round(overage / 1000 * plan.overage_per_1k_requests, 6),
            spending_cap=acct.spending_cap,
            test_requests=test_requests,
            failed_requests=failed,
        )

    def usage_count(self, account: str | None = None) -> int:
        """Every usage record (of one account), whatever its status or period."""
        if account is None:
            return self._rows("SELECT count(*) FROM usage")[0][0]
        return self._rows("SELECT count(*) FROM usage WHERE account_id = ?", [self.account(account).id])[0][0]

    def account_overviews(self, period: str | None = None) -> list[AccountOverview]:
        """Every account with its period's usage, the highest alert reached and its active keys."""
        period = period or clock.current_period()
        clock.period_bounds(period)
        levels = dict(
            self._rows(
                "SELECT account_id, max(threshold) FROM alert_events WHERE period = ? GROUP BY account_id", [period]
            )
        )
        active = dict(
            self._rows("SELECT account_id, count(*) FROM api_keys WHERE revoked_at IS NULL GROUP BY account_id")
        )
        return [
            AccountOverview(
                account=acct,
                usage=self.usage_summary(acct.name, period),
                alert_level=levels.get(acct.id, 0),
                active_keys=active.get(acct.id, 0),
            )
            for acct in self.accounts()
        ]

    def usage_breakdown(self, account: str | None = None, period: str | None = None) -> UsageBreakdown:
        """A period's usage (all accounts, or one) by account, key, specialist and UTC day.

        requests: billable successes; failed: live requests with status >= 400; test: successful
        test-key requests; tokens: prompt + completion tokens of the billable requests.
        """
        period = period or clock.current_period()
        clock.period_bounds(period)
        where, params = "u.period = ?", [period]
        if account is not None:
            where += " AND u.account_id = ?"
            params.append(self.account(account).id)
        sums = (
            "sum(u.billable), sum(CASE WHEN u.billable = 1 THEN u.prompt_tokens + u.completion_tokens ELSE 0 END),"
            " sum(CASE WHEN u.status >= 400 AND u.test = 0 THEN 1 ELSE 0 END),"
            " sum(CASE WHEN u.status < 400 AND u.test = 1 THEN 1 ELSE 0 END)"
        )

        def grouped(name_sql: str, joins: str = "") -> list[UsageRow]:
            rows = self._rows(
                f"SELECT {name_sql} AS name, {sums} FROM usage u {joins} WHERE {where} GROUP BY name", params
            )
            out = [UsageRow(name=r[0], requests=r[1], tokens=r[2], failed=r[3], test=r[4]) for r in rows]
            return sorted(out, key=lambda row: (-row.requests, -row.tokens, row.name))

        days = self._rows(
            f"SELECT substr(u.created_at, 1, 10) AS day, {sums} FROM usage u WHERE {where} GROUP BY day ORDER BY day",
            params,
        )
        return UsageBreakdown(
            period=period,
            account=account,
            by_account=grouped("a.name", "JOIN accounts a ON a.id = u.account_id"),
            by_key=grouped("k.prefix", "JOIN api_keys k ON k.id = u.key_id"),
            by_specialist=grouped("coalesce(u.specialist, 'unknown')"),
            by_day=[DailyUsage(day=r[0], requests=r[1], tokens=r[2], failed=r[3]) for r in days],
        )

    # alerts ----------------------------------------------------------------
    def alert_thresholds(self, account_id: int, period: str) -> set[int]:
        rows = self._rows(
            "SELECT threshold FROM alert_events WHERE account_id = ? AND period = ?", [account_id, period]
        )
        return {r[0] for r in rows}

    def record_alert(self, account_id: int, period: str, threshold: int, used: int, limit: int) -> Future[bool]:
        """Record an alert once per account, period and threshold; resolves to whether it is new."""

        return self._writer.submit(lambda db: insert_alert(db, account_id, period, threshold, used, limit), keep=True)

    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]:
        sql = (
            "SELECT a.name, e.period, e.threshold, e.requests_used, e.requests_limit, e.created_at"
            " FROM alert_events e JOIN accounts a ON a.id = e.account_id WHERE 1 = 1"
        )
        params: list[Any] = []
        if account is not None:
            self.account(account)
            sql += " AND a.name = ?"
            params.append(account)
        if period is not None:
            sql += " AND e.period = ?"
            params.append(period)
        return [AlertEvent(*r) for r in self._rows(sql + " ORDER BY e.id", params)]


# Write jobs' parts, for the store's own writes and for metering's job on a cluster (one transaction
# with the quota count there).
def insert_usage(db: Db, record: UsageRecord) -> None:
    """One usage record, and its key's last use."""
    row = {
        "key_id": record.key_id,
        "account_id": record.account_id,
        "endpoint": record.endpoint,
        "specialist": record.specialist,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
        "status": record.status,
        "created_at": record.created_at,
        "period": record.period,
        "test": int(record.test),
        "billable": int(record.billable),
        "overage": int(record.overage),
    }
    db.execute(f"INSERT INTO usage ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    note_key_use(db, record.key_id, record.created_at)


def insert_alert(db: Db, account_id: int, period: str, threshold: int, used: int, limit: int) -> bool:
    """An alert, once per account, period and threshold; whether this call recorded it."""
    cursor = db.execute(
        "INSERT INTO alert_events (account_id, period, threshold, requests_used, requests_limit,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [account_id, period, threshold, used, limit, clock.now_iso()],
    )
    return cursor.rowcount == 1
