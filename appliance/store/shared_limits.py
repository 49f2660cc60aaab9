"""Rate limits and quota holds that are exact across a cluster: kept in PostgreSQL, each decision one
atomic statement, so no number of nodes or concurrent requests admits more than the limit. (A
single box keeps them in memory: appliance/core/limits.py, the same rules.)

- Rate limits: GCRA per key, the two theoretical arrival times in `rate_limits`, on the database's
  clock (nodes' clocks never enter). One `INSERT ... ON CONFLICT DO UPDATE ... WHERE fits RETURNING`
  takes a request and its tokens, or returns nothing and takes nothing.
- Quotas and spending caps: `quota_ledger` holds each account's billable requests in the period
  (seeded from its usage records) and the requests admitted but not finished (`reserved`). One
  `UPDATE ... SET reserved = reserved + 1 WHERE cap allows RETURNING` holds a request; its end
  settles it (used + 1, in the same transaction as its usage record) or releases it. Each node's
  holds are also counted in `quota_holds`, so a node killed mid-request gives its holds back when it
  starts again, and any node takes back those of a node silent for HOLDS_EXPIRE_S.
"""

from __future__ import annotations

from concurrent.futures import Future

from appliance.core.limits import WINDOW_S, RateState, gcra_take, over_cap, rate_state
from appliance.store.sql import PG_NOW_S, Db
from appliance.store.store import Store

_EPS = 1e-6
# The database's clock, in seconds, once per statement (a CTE referenced twice is evaluated once).
_NOW = f"WITH now AS MATERIALIZED (SELECT {PG_NOW_S} AS t)"

_TAKE = f"""{_NOW}
INSERT INTO rate_limits AS r (key_id, requests_tat, tokens_tat)
SELECT ?, now.t + ?, now.t + ? FROM now WHERE ? <= ? AND ? <= ?
ON CONFLICT (key_id) DO UPDATE SET
    requests_tat = greatest(r.requests_tat, (SELECT t FROM now)) + ?,
    tokens_tat = greatest(r.tokens_tat, (SELECT t FROM now)) + ?
WHERE greatest(r.requests_tat, (SELECT t FROM now)) + ? - (SELECT t FROM now) <= ?
    AND (? = 0 OR greatest(r.tokens_tat, (SELECT t FROM now)) + ? - (SELECT t FROM now) <= ?)
RETURNING r.requests_tat, r.tokens_tat, (SELECT t FROM now)"""

_HOLD = """UPDATE quota_ledger SET reserved = reserved + 1
WHERE account_id = ? AND period = ?
    AND (?::float8 IS NULL OR greatest(0, used + reserved + 1 - ?) * ?::float8 <= ?::float8 * 1000 + ?)
RETURNING used, reserved"""

# A node silent this long (no heartbeat) runs no request any more: its holds are taken back.
HOLDS_EXPIRE_S = 600.0

_COUNT_HOLD = """INSERT INTO quota_holds (node, account_id, period, n) VALUES (?, ?, ?, 1)
ON CONFLICT (node, account_id, period) DO UPDATE SET n = quota_holds.n + 1"""
_UNCOUNT_HOLD = "UPDATE quota_holds SET n = greatest(0, n - 1) WHERE node = ? AND account_id = ? AND period = ?"
_RECLAIM = """WITH gone AS (DELETE FROM quota_holds WHERE {which} RETURNING account_id, period, n)
UPDATE quota_ledger q SET reserved = greatest(0, q.reserved - g.n)
FROM (SELECT account_id, period, sum(n)::int AS n FROM gone GROUP BY account_id, period) g
WHERE q.account_id = g.account_id AND q.period = g.period"""

_SEED = """INSERT INTO quota_ledger (account_id, period, used, reserved)
SELECT ?, ?, count(*), 0 FROM usage WHERE account_id = ? AND period = ? AND billable = 1
ON CONFLICT (account_id, period) DO NOTHING"""


class SharedLimits:
    """The cluster's limits, on the store's PostgreSQL (its read pool for the decisions, which must
    answer now; its writer for the settlements, which need not)."""

    def __init__(self, store: Store, node: str) -> None:
        self.store = store
        # This node's id (the nodes table's): whose holds are whose.
        self.node = node
        # Each key's state as this node last saw it, for the headers of answers that took nothing
        # (read on the event loop, written by worker threads: a dict's item is replaced whole).
        self.last: dict[int, RateState] = {}

    # rate limits -----------------------------------------------------------
    def take(self, key_id: int, rpm: int, tpm: int, tokens: int) -> RateState:
        """One request and `tokens` from the key's allowances, or RateLimited (taking nothing)."""
        rs, ts = WINDOW_S / rpm, tokens * WINDOW_S / tpm
        limit = WINDOW_S + _EPS
        params = [key_id, rs, ts, rs, limit, ts, limit, rs, ts, rs, limit, ts, ts, limit]

        def attempt(db: Db) -> tuple[bool, tuple]:
            row = db.one(_TAKE, params)
            if row is not None:
                return True, row
            # Refused: why, and for how long, from the state as it is now (the same rule says it).
            return False, _state(db, key_id)

        took, row = self.store._read(attempt)
        if took:
            state = self.last[key_id] = rate_state(rpm, tpm, row[0], row[1], row[2])
            return state
        now, req_tat, tok_tat = row
        self.last[key_id] = rate_state(rpm, tpm, req_tat, tok_tat, now)
        gcra_take(req_tat, tok_tat, now, rpm, tpm, tokens)  # raises RateLimited with the wait
        # It fits now (a settlement refunded tokens in between): take it again.
        return self.take(key_id, rpm, tpm, tokens)

    def settle(self, key_id: int, tokens_per_minute: int, estimate: int, actual: int) -> Future[None]:
        """Replace a request's up-front token estimate with what it used (refund or charge the difference)."""
        delta = (actual - estimate) * WINDOW_S / tokens_per_minute

        def job(db: Db) -> None:
            db.execute("UPDATE rate_limits SET tokens_tat = tokens_tat + ? WHERE key_id = ?", [delta, key_id])

        return self.store.submit(job, keep=True)

    # quotas ----------------------------------------------------------------
    def hold(self, account_id: int, period: str, monthly_limit: int, overage_per_1k: float, cap: float | None) -> None:
        """Hold one request against the account's period, or QuotaExceeded when it would pass the cap."""
        params = [account_id, period, cap, monthly_limit, overage_per_1k, cap, _EPS]

        def held(db: Db) -> bool:
            with db.conn.transaction():  # the hold and this node's count of it, together
                if db.one(_HOLD, params) is None:
                    return False
                db.execute(_COUNT_HOLD, [self.node, account_id, period])
                return True

        def attempt(db: Db) -> tuple | None:
            if held(db):
                return None
            db.execute(_SEED, [account_id, period, account_id, period])  # the period's first request
            if held(db):
                return None
            found = db.one(
                "SELECT used, reserved FROM quota_ledger WHERE account_id = ? AND period = ?", [account_id, period]
            )
            return found or (0, 0)

        refused_at = self.store._read(attempt)
        if refused_at is None:
            return
        used, reserved = refused_at
        refused = over_cap(used, reserved, monthly_limit, overage_per_1k, cap)
        if refused is None:  # a hold was released in between: try again
            return self.hold(account_id, period, monthly_limit, overage_per_1k, cap)
        raise refused

    def commit(self, db: Db, account_id: int, period: str) -> int:
        """In the usage record's write job: the held request counts. Returns the period's count."""
        row = db.one(
            "UPDATE quota_ledger SET used = used + 1, reserved = greatest(0, reserved - 1)"
            " WHERE account_id = ? AND period = ? RETURNING used",
            [account_id, period],
        )
        db.execute(_UNCOUNT_HOLD, [self.node, account_id, period])
        return int(row[0]) if row else 0

    def reclaim(self) -> None:
        """At start: the holds this node left when it last stopped without finishing its requests
        (killed), given back; and those of nodes silent for HOLDS_EXPIRE_S."""
        self.store._write(lambda db: db.execute(_RECLAIM.format(which="node = ?"), [self.node]))
        self.reclaim_silent()

    def reclaim_silent(self) -> Future[None]:
        """The holds of nodes with no heartbeat for HOLDS_EXPIRE_S, given back (any node may)."""

        def job(db: Db) -> None:
            silent = f"node IN (SELECT id FROM nodes WHERE {db.now_s()} - heartbeat > ?)"
            db.execute(_RECLAIM.format(which=silent), [HOLDS_EXPIRE_S])

        return self.store.submit(job)

    def release(self, account_id: int, period: str) -> Future[None]:
        """The held request failed: it does not count."""

        def job(db: Db) -> None:
            db.execute(
                "UPDATE quota_ledger SET reserved = greatest(0, reserved - 1) WHERE account_id = ? AND period = ?",
                [account_id, period],
            )
            db.execute(_UNCOUNT_HOLD, [self.node, account_id, period])

        return self.store.submit(job, keep=True)


def _state(db: Db, key_id: int) -> tuple[float, float, float]:
    row = db.one(
        f"SELECT {PG_NOW_S}, r.requests_tat, r.tokens_tat FROM (SELECT 1) one LEFT JOIN rate_limits r ON r.key_id = ?",
        [key_id],
    )
    assert row is not None
    return float(row[0]), float(row[1] or 0.0), float(row[2] or 0.0)
