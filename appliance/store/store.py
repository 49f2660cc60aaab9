"""The one interface to the SQLite file: plans, accounts, keys, usage, custom prompts, alerts.

Every write goes through one writer thread with its own connection, fed by a queue: writes that
arrive together run in one transaction (each in its own savepoint, so one failing job fails
alone) and their futures resolve only after the commit, so an awaited write is durable. Reads
use a second connection; in WAL mode they never wait for the writer. The CLI uses the same
methods synchronously; the server awaits the futures off the event loop.
"""

from __future__ import annotations

import calendar
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from appliance import security
from appliance.errors import Conflict, InvalidRequest, NotFound
from appliance.store import backup, migrations
from appliance.store.records import (
    Account,
    AccountOverview,
    AlertEvent,
    BackupInfo,
    CreatedKey,
    CustomPrompt,
    DailyUsage,
    KeyInfo,
    Plan,
    Principal,
    SpecialistOverride,
    UsageBreakdown,
    UsageRecord,
    UsageRow,
    UsageSummary,
)

DB_FILE = "alveare.db"
SECRET_FILE = "key-secret"
ADMIN_ACCOUNT = "admin"
MAX_ACTIVE_KEYS = 5
PLAN_FIELDS = (
    "requests_per_minute",
    "requests_per_month",
    "tokens_per_minute",
    "specialists_allowed",
    "custom_prompts",
    "overage_per_1k_requests",
    "monthly_price",
)
# A batch of writes committed together; bounded so one commit stays short.
MAX_BATCH = 512

log = logging.getLogger("alveare.store")
T = TypeVar("T")


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


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in the writer; sqlite-utils'
    # atomic() savepoints inside it), never opened implicitly by the sqlite3 module.
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _Writer:
    """One thread owns the write connection; jobs are callables run on it, batched per commit."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[tuple[Callable[[Database], Any], Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alveare-store-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, job: Callable[[Database], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the store is closed"))
            return future
        self._queue.put((job, future))
        return future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
        self._db.close()

    def _commit(self, batch: list[tuple[Callable[[Database], Any], Future]]) -> None:
        outcomes: list[tuple[Future, Any, BaseException | None]] = []
        conn = self._db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                try:
                    with self._db.atomic():  # a savepoint: a failing job rolls back alone
                        outcomes.append((future, job(self._db), None))
                except Exception as exc:
                    outcomes.append((future, None, exc))
            conn.execute("COMMIT")
        except Exception as exc:
            log.error("store: a batch of %d writes failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(future, None, exc) for _, future in batch]
        for future, result, error in outcomes:
            try:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
            except InvalidStateError:  # the waiter gave up (cancelled); the write stands
                pass


def _make_private(data_dir: Path) -> None:
    """The data dir 0700 and the database files 0600, new or already there: account names, usage
    and prompts are nobody else's business. SQLite gives -wal and -shm the database file's mode."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = data_dir / DB_FILE
    db.touch(mode=0o600, exist_ok=True)
    for path in (data_dir, db, db.with_name(DB_FILE + "-wal"), db.with_name(DB_FILE + "-shm")):
        mode = 0o700 if path == data_dir else 0o600
        try:
            if path.exists() and path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
        except OSError as exc:  # e.g. a data dir owned by another user: work, but say so
            log.warning("could not restrict %s to mode %o: %s", path, mode, exc)


class Store:
    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        """Open the store in `data_dir`. Only `alveare serve` creates one; the admin tools pass
        create=False, so a mistyped data dir is an error rather than a new, empty store."""
        if not create and not (data_dir / DB_FILE).is_file():
            raise NotFound(
                f"There is no Alveare data dir at {data_dir} (no {DB_FILE}). Check --data-dir or "
                "ALVEARE_DATA_DIR; `alveare serve` creates the data dir."
            )
        _make_private(data_dir)
        self.path = data_dir / DB_FILE
        self._secret = security.load_or_create_secret(data_dir / SECRET_FILE)
        write_db = Database(_connect(self.path))
        write_db.execute("PRAGMA journal_mode=WAL")
        write_db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(write_db)
        self._writer = _Writer(write_db)
        self._db = Database(_connect(self.path))
        self._lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._db.close()

    # plumbing --------------------------------------------------------------
    def _write(self, job: Callable[[Database], T]) -> T:
        """Run a write on the writer thread and wait for its commit (the CLI's way)."""
        return self._writer.submit(job).result()

    def submit(self, job: Callable[[Database], T]) -> Future[T]:
        return self._writer.submit(job)

    def backup(self, path: str | Path) -> BackupInfo:
        """A consistent copy of the database, taken while it is in use (SQLite's backup API), checked
        with PRAGMA integrity_check, at `path` (a new file, or a time-stamped one in a folder).
        Writes already queued (usage records) are committed first, so the copy includes them."""
        self.flush().result()
        return backup.backup(self.path, path)

    def flush(self) -> Future[None]:
        """Resolves once every write submitted before it is committed."""
        return self._writer.submit(lambda db: None)

    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # plans -----------------------------------------------------------------
    def plans(self) -> list[Plan]:
        with self._lock:
            rows = list(self._db["plans"].rows_where(order_by="requests_per_minute, name"))
        return [self._plan(r) for r in rows]

    def plan(self, name: str) -> Plan:
        with self._lock:
            rows = list(self._db["plans"].rows_where("name = ?", [name.lower()]))
        if not rows:
            known = ", ".join(p.name for p in self.plans())
            raise NotFound(f"No plan named {name!r}. Plans: {known}.", param="plan", code="plan_not_found")
        return self._plan(rows[0])

    @staticmethod
    def _plan(row: dict[str, Any]) -> Plan:
        return Plan(**{**row, "custom_prompts": bool(row["custom_prompts"])})

    def set_plan(self, name: str, *, base: str = "starter", **changes: Any) -> tuple[Plan, bool]:
        """Change a plan's limits, or create the plan (from `base`'s values) when it does not exist.

        Returns the plan and whether it was created.
        """
        name = name.strip().lower()
        if not name or len(name) > 32 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidRequest("A plan name is 1 to 32 letters, digits, '-' or '_'.", param="name")
        unknown = set(changes) - set(PLAN_FIELDS)
        if unknown:
            raise InvalidRequest(f"Unknown plan fields: {', '.join(sorted(unknown))}.")
        changes = {k: v for k, v in changes.items() if v is not None}
        for field in ("requests_per_minute", "requests_per_month", "tokens_per_minute"):
            if field in changes and (not isinstance(changes[field], int) or changes[field] < 1):
                raise InvalidRequest(f"{field} must be a whole number of at least 1.", param=field)
        if "specialists_allowed" in changes and changes["specialists_allowed"] < 0:
            raise InvalidRequest("specialists_allowed must not be negative.", param="specialists_allowed")
        for field in ("overage_per_1k_requests", "monthly_price"):
            if field in changes and not 0 <= changes[field] < 1e9:
                raise InvalidRequest(f"{field} must be a price of 0 or more.", param=field)
        try:
            current = self.plan(name)
            created = False
        except NotFound:
            current = self.plan(base)
            created = True
        row = {**msgspec_to_dict(current), **changes, "name": name}
        row["custom_prompts"] = int(bool(row["custom_prompts"]))

        def job(db: Database) -> None:
            db["plans"].upsert(row, pk="name")

        self._write(job)
        return self.plan(name), created

    # accounts --------------------------------------------------------------
    def create_account(self, name: str, plan: str = "starter") -> Account:
        name = name.strip()
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidRequest("An account name is 1 to 64 letters, digits, '-', '_' or '.'.", param="name")
        plan_row = self.plan(plan)

        def job(db: Database) -> None:
            if db["accounts"].count_where("name = ?", [name]):
                raise Conflict(f"An account named {name!r} already exists.", param="name")
            db["accounts"].insert(
                {
                    "name": name,
                    "plan": plan_row.name,
                    "spending_cap": None,
                    "created_at": now_iso(),
                    "specialists": None,
                }
            )

        self._write(job)
        return self.account(name)

    def account(self, name: str) -> Account:
        with self._lock:
            rows = list(self._db["accounts"].rows_where("name = ?", [name]))
        if not rows:
            raise NotFound(f"No account named {name!r}.", param="account", code="account_not_found")
        return self._account(rows[0])

    def accounts(self) -> list[Account]:
        with self._lock:
            rows = list(self._db["accounts"].rows_where(order_by="id"))
        return [self._account(r) for r in rows]

    @staticmethod
    def _account(row: dict[str, Any]) -> Account:
        specialists = row.get("specialists")
        return Account(**{**row, "specialists": specialists.split(",") if specialists else None})

    def _update_account(self, name: str, values: dict[str, Any]) -> Account:
        acct = self.account(name)
        self._write(lambda db: db["accounts"].update(acct.id, values))
        return self.account(name)

    def set_account_plan(self, name: str, plan: str) -> Account:
        return self._update_account(name, {"plan": self.plan(plan).name})

    def set_spending_cap(self, name: str, cap: float | None) -> Account:
        if cap is not None and not 0 <= cap < 1e12:
            raise InvalidRequest("A spending cap is an amount of 0 or more, or 'none'.", param="cap")
        return self._update_account(name, {"spending_cap": cap})

    def set_specialists(self, name: str, specialists: list[str] | None) -> Account:
        """The specialists the account may use (None: the plan's default set). Names are checked by the caller."""
        if specialists is not None:
            plan = self.plan(self.account(name).plan)
            if len(specialists) > plan.specialists_allowed:
                raise InvalidRequest(
                    f"The {plan.name} plan allows {plan.specialists_allowed} specialists; "
                    f"{len(specialists)} were given.",
                    param="specialists",
                )
        return self._update_account(name, {"specialists": ",".join(specialists) if specialists is not None else None})

    # keys ------------------------------------------------------------------
    def create_key(self, account: str, *, test: bool = False, admin: bool = False) -> CreatedKey:
        acct = self.account(account)
        key = security.generate_key(test=test)

        def job(db: Database) -> None:
            # Admin keys (the first-run key, the TUI's key) are not apps' keys: the limit is on the others.
            active = db["api_keys"].count_where("account_id = ? AND revoked_at IS NULL AND admin = 0", [acct.id])
            if not admin and active >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"Account {account!r} already has {MAX_ACTIVE_KEYS} active keys, the most allowed. "
                    "Revoke one before creating another.",
                    code="too_many_keys",
                )
            db["api_keys"].insert(
                {
                    "account_id": acct.id,
                    "prefix": security.display_prefix(key),
                    "hash": security.hash_key(self._secret, key),
                    "test": int(test),
                    "admin": int(admin),
                    "created_at": now_iso(),
                    "revoked_at": None,
                    "last_used_at": None,
                }
            )

        self._write(job)
        return CreatedKey(key=key, prefix=security.display_prefix(key), account=acct.name, test=test)

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

    def revoke_key(self, prefix: str) -> KeyInfo:
        if len(prefix) < 12:
            raise InvalidRequest("Give at least 12 characters of the key prefix, e.g. alv_live_AbC.", param="prefix")
        matches = [k for k in self.keys() if k.prefix.startswith(prefix) and k.revoked_at is None]
        if not matches:
            raise NotFound(f"No active key starts with {prefix!r}.", param="prefix", code="key_not_found")
        if len(matches) > 1:
            raise Conflict(
                f"{len(matches)} active keys start with {prefix!r}; give more of the prefix.", param="prefix"
            )
        key_id = matches[0].id
        self._write(lambda db: db["api_keys"].update(key_id, {"revoked_at": now_iso()}))
        return next(k for k in self.keys() if k.id == key_id)

    def has_admin_key(self) -> bool:
        with self._lock:
            return bool(self._db["api_keys"].count_where("admin = 1 AND revoked_at IS NULL"))

    def ensure_admin(self) -> CreatedKey | None:
        """On first start: an admin account with one admin key, returned once so it can be printed."""
        if self.has_admin_key():
            return None
        try:
            self.account(ADMIN_ACCOUNT)
        except NotFound:
            self.create_account(ADMIN_ACCOUNT, "scale")
        return self.create_key(ADMIN_ACCOUNT, admin=True)

    def authenticate(self, key: str) -> Principal | None:
        """The principal for a raw key, or None for an unknown or revoked one.

        The look-up is by keyed hash: equality on a hash of the secret, so timing reveals
        nothing about the key itself.
        """
        digest = security.hash_key(self._secret, key)
        rows = self._rows(
            "SELECT k.id, k.prefix, k.test, k.admin, a.id, a.name, a.spending_cap, a.specialists, k.hash,"
            " p.name, p.requests_per_minute, p.requests_per_month, p.tokens_per_minute, p.specialists_allowed,"
            " p.custom_prompts, p.overage_per_1k_requests, p.monthly_price"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id JOIN plans p ON p.name = a.plan"
            " WHERE k.hash = ? AND k.revoked_at IS NULL",
            [digest],
        )
        if not rows or not security.constant_time_equal(rows[0][8], digest):
            return None
        row = rows[0]
        plan = Plan(*row[9:14], bool(row[14]), *row[15:17])
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

    # usage -----------------------------------------------------------------
    def record_usage(self, record: UsageRecord) -> Future[None]:
        """Queue one usage record (and the key's last use); resolves once it is committed."""
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

        def job(db: Database) -> None:
            db.execute(f"INSERT INTO usage ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [record.created_at, record.key_id])

        return self._writer.submit(job)

    def billable_requests(self, account_id: int, period: str) -> int:
        """The committed requests that count toward the account's monthly quota."""
        return self._rows(
            "SELECT count(*) FROM usage WHERE account_id = ? AND period = ? AND billable = 1", [account_id, period]
        )[0][0]

    def usage_summary(self, account: str, period: str | None = None) -> UsageSummary:
        acct = self.account(account)
        plan = self.plan(acct.plan)
        period = period or current_period()
        start, end = period_bounds(period)
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
        period = period or current_period()
        period_bounds(period)
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
        period = period or current_period()
        period_bounds(period)
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

        def job(db: Database) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alert_events (account_id, period, threshold, requests_used, requests_limit,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [account_id, period, threshold, used, limit, now_iso()],
            )
            return cursor.rowcount == 1

        return self._writer.submit(job)

    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]:
        sql = (
            "SELECT a.name, e.period, e.threshold, e.requests_used, e.requests_limit, e.created_at"
            " FROM alert_events e JOIN accounts a ON a.id = e.account_id WHERE 1"
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

    # custom system prompts -------------------------------------------------
    def custom_prompts(self, account_id: int) -> dict[str, CustomPrompt]:
        rows = self._rows(
            "SELECT specialist, system_prompt, updated_at FROM custom_prompts WHERE account_id = ?", [account_id]
        )
        return {r[0]: CustomPrompt(*r) for r in rows}

    def custom_prompt(self, account_id: int, specialist: str) -> str | None:
        rows = self._rows(
            "SELECT system_prompt FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
        )
        return rows[0][0] if rows else None

    def set_custom_prompt(self, account_id: int, specialist: str, prompt: str) -> Future[None]:
        row = {"account_id": account_id, "specialist": specialist, "system_prompt": prompt, "updated_at": now_iso()}

        def job(db: Database) -> None:
            db["custom_prompts"].upsert(row, pk=("account_id", "specialist"))

        return self._writer.submit(job)

    def delete_custom_prompt(self, account_id: int, specialist: str) -> Future[bool]:
        def job(db: Database) -> bool:
            cursor = db.execute(
                "DELETE FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
            )
            return cursor.rowcount > 0

        return self._writer.submit(job)

    # specialist overrides ---------------------------------------------------
    _OVERRIDE_SQL = (
        "SELECT specialist, system_prompt, temperature, top_p, max_tokens, updated_at FROM specialist_overrides"
    )

    def specialist_override(self, specialist: str) -> SpecialistOverride | None:
        """The admin's override of a specialist's defaults (one primary-key read), or None."""
        rows = self._rows(self._OVERRIDE_SQL + " WHERE specialist = ?", [specialist])
        return SpecialistOverride(*rows[0]) if rows else None

    def specialist_overrides(self) -> dict[str, SpecialistOverride]:
        return {r[0]: SpecialistOverride(*r) for r in self._rows(self._OVERRIDE_SQL + " ORDER BY specialist")}

    def set_specialist_override(
        self,
        specialist: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> SpecialistOverride:
        """Merge the given fields into the specialist's override (None leaves a field as it is).

        Values are checked by the caller (appliance.admin), which knows the catalogue.
        """
        changes = {
            "system_prompt": system_prompt,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        changes = {k: v for k, v in changes.items() if v is not None}

        def job(db: Database) -> None:
            rows = list(db["specialist_overrides"].rows_where("specialist = ?", [specialist]))
            row = rows[0] if rows else {"specialist": specialist}
            db["specialist_overrides"].upsert({**row, **changes, "updated_at": now_iso()}, pk="specialist")

        self._write(job)
        found = self.specialist_override(specialist)
        assert found is not None
        return found

    def delete_specialist_override(self, specialist: str) -> bool:
        def job(db: Database) -> bool:
            return db.execute("DELETE FROM specialist_overrides WHERE specialist = ?", [specialist]).rowcount > 0

        return self._write(job)


def msgspec_to_dict(value: Any) -> dict[str, Any]:
    return {f: getattr(value, f) for f in value.__struct_fields__}
