"""Per-key rate limits and per-account monthly quotas, in memory.

Rate limits are GCRA ("generic cell rate algorithm", a token bucket kept as one timestamp per
key and dimension): a key may spend its per-minute limit in a burst, and the allowance refills
continuously at limit/60 per second, as OpenAI's limits do. Requests and tokens are checked
together and consumed together; nothing here awaits, so on the event loop a check and its
consumption are atomic and N parallel requests at a limit of L admit exactly L.

`FailedKeyLimiter` bounds refused API keys per client address: past a burst, a wrong key is
answered 429 with Retry-After, while a valid key from the same address is still served.

The quota book counts each account's billable requests for the period (seeded from the store's
records when an account is first seen) plus the requests admitted but not yet finished, so a
spending cap holds under concurrency too.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.core.errors import QuotaExceeded, RateLimited

WINDOW_S = 60.0
# Sandbox (alv_test_) keys get this fraction of the plan's per-minute limits (at least 1).
TEST_KEY_FRACTION = 4
ALERT_THRESHOLDS = (75, 90, 100)
_EPS = 1e-6


def duration(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-*: "20ms", "1s", "59.5s", "6m0s", "1h2m3s"."""
    ms = max(0, math.ceil(seconds * 1000 - _EPS))
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def key_limits(requests_per_minute: int, tokens_per_minute: int, test: bool) -> tuple[int, int]:
    if not test:
        return requests_per_minute, tokens_per_minute
    return max(1, requests_per_minute // TEST_KEY_FRACTION), max(1, tokens_per_minute // TEST_KEY_FRACTION)


@dataclass(frozen=True)
class RateState:
    """What the x-ratelimit-* headers say."""

    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit_requests),
            "x-ratelimit-remaining-requests": str(self.remaining_requests),
            "x-ratelimit-reset-requests": duration(self.reset_requests_s),
            "x-ratelimit-limit-tokens": str(self.limit_tokens),
            "x-ratelimit-remaining-tokens": str(self.remaining_tokens),
            "x-ratelimit-reset-tokens": duration(self.reset_tokens_s),
        }


@dataclass
class _Buckets:
    # Theoretical arrival times: when each allowance would be full again (<= now: full).
    requests_tat: float = 0.0
    tokens_tat: float = 0.0


@dataclass
class Admission:
    """An admitted request's hold on its key's token allowance, settled when it finishes."""

    key_id: int
    tokens_per_minute: int
    estimate: int
    state: RateState
    settled: bool = False


def _level(tat: float, now: float) -> float:
    """Seconds of allowance in use (0: full, WINDOW_S: empty)."""
    return max(tat, now) - now


def _remaining(limit: int, tat: float, now: float) -> int:
    return max(0, min(limit, math.floor(limit * (WINDOW_S - _level(tat, now)) / WINDOW_S + _EPS)))


def rate_state(rpm: int, tpm: int, requests_tat: float, tokens_tat: float, now: float) -> RateState:
    return RateState(
        limit_requests=rpm,
        remaining_requests=_remaining(rpm, requests_tat, now),
        reset_requests_s=_level(requests_tat, now),
        limit_tokens=tpm,
        remaining_tokens=_remaining(tpm, tokens_tat, now),
        reset_tokens_s=_level(tokens_tat, now),
    )


def too_large(tokens: int, tpm: int) -> RateLimited | None:
    """A request that could never fit the key's tokens per minute, whatever it waits."""
    if tokens <= tpm:
        return None
    return RateLimited(
        f"Request too large: it may use up to {tokens} tokens (prompt plus max_tokens), more than this "
        f"key's limit of {tpm} tokens per minute. Lower max_tokens or shorten the prompt.",
        headers={"x-should-retry": "false"},
    )


def gcra_take(
    requests_tat: float, tokens_tat: float, now: float, rpm: int, tpm: int, tokens: int
) -> tuple[float, float]:
    """The allowances' new arrival times after one request and `tokens`, or RateLimited (with how long
    to wait) when either would pass its limit. The one rule, in memory here and in PostgreSQL's
    statement for a cluster (appliance/store/shared_limits.py)."""
    req_tat = max(requests_tat, now) + WINDOW_S / rpm
    tok_tat = max(tokens_tat, now) + tokens * WINDOW_S / tpm
    wait = max(req_tat - now - WINDOW_S, tok_tat - now - WINDOW_S if tokens else 0.0)
    if wait > _EPS:
        what = "requests" if req_tat - now - WINDOW_S > _EPS else "tokens"
        limit = rpm if what == "requests" else tpm
        raise RateLimited(
            f"Rate limit reached for {what}: this key may use {limit} {what} per minute. "
            f"Please try again in {duration(wait)}.",
            headers={
                "Retry-After": str(max(1, math.ceil(wait - _EPS))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000 - _EPS))),
            },
        )
    return req_tat, tok_tat


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[int, _Buckets] = {}

    def peek(self, key_id: int, rpm: int, tpm: int) -> RateState:
        b = self._keys.get(key_id) or _Buckets()
        return rate_state(rpm, tpm, b.requests_tat, b.tokens_tat, self._clock())

    def admit(self, key_id: int, rpm: int, tpm: int, tokens: int) -> Admission:
        """Take one request and `tokens` from the key's allowances, or raise RateLimited (taking nothing)."""
        now = self._clock()
        b = self._keys.setdefault(key_id, _Buckets())
        if refused := too_large(tokens, tpm):
            raise refused
        b.requests_tat, b.tokens_tat = gcra_take(b.requests_tat, b.tokens_tat, now, rpm, tpm, tokens)
        return Admission(key_id, tpm, tokens, rate_state(rpm, tpm, b.requests_tat, b.tokens_tat, now))

    def settle(self, admission: Admission, actual_tokens: int) -> None:
        """Replace the up-front token estimate with the tokens actually used (refund or charge the difference)."""
        if admission.settled:
            return
        admission.settled = True
        b = self._keys.get(admission.key_id)
        if b is not None:
            b.tokens_tat += (actual_tokens - admission.estimate) * WINDOW_S / admission.tokens_per_minute


@dataclass
class _Ledger:
    used: int
    alerted: set[int]
    pending: int = 0


@dataclass
class QuotaHold:
    account_id: int
    period: str
    done: bool = False


@dataclass
class QuotaResult:
    overage: bool
    requests_used: int
    new_alerts: list[int] = field(default_factory=list)


def over_cap(
    used: int, pending: int, monthly_limit: int, overage_per_1k: float, cap: float | None
) -> QuotaExceeded | None:
    """The refusal when one more request would take the period's overage charge past the spending
    cap; None while it stays within it."""
    if cap is None or max(0, used + pending + 1 - monthly_limit) * overage_per_1k <= cap * 1000 + _EPS:
        return None
    return QuotaExceeded(
        f"You exceeded your spending cap of {cap:g} for this period: {used} requests used "
        f"of the plan's {monthly_limit}, and overage is charged at {overage_per_1k:g} per 1,000 requests. "
        "Requests resume next period, or ask your Alveare admin to raise the cap.",
        headers={"x-should-retry": "false"},
    )


def crossed_thresholds(used: int, monthly_limit: int) -> list[int]:
    """The alert thresholds (percent of the monthly requests) that `used` has reached."""
    return [t for t in ALERT_THRESHOLDS if used * 100 >= t * monthly_limit]


class QuotaBook:
    """Billable requests per account and period; the spending cap's gate."""

    def __init__(self) -> None:
        self._ledgers: dict[tuple[int, str], _Ledger] = {}

    def knows(self, account_id: int, period: str) -> bool:
        """Whether the period's count is in memory (safe to ask from another thread)."""
        return (account_id, period) in self._ledgers

    def _ledger(self, account_id: int, period: str, load: Callable[[], tuple[int, set[int]]]) -> _Ledger:
        ledger = self._ledgers.get((account_id, period))
        if ledger is None:
            # A new period: forget the old ones of this account.
            for k in [k for k in self._ledgers if k[0] == account_id]:
                del self._ledgers[k]
            used, alerted = load()
            ledger = self._ledgers[(account_id, period)] = _Ledger(used, set(alerted))
        return ledger

    def used(self, account_id: int, period: str, load: Callable[[], tuple[int, set[int]]]) -> int:
        return self._ledger(account_id, period, load).used

    def reserve(
        self,
        account_id: int,
        period: str,
        load: Callable[[], tuple[int, set[int]]],
        *,
        monthly_limit: int,
        overage_per_1k: float,
        cap: float | None,
    ) -> QuotaHold:
        """Hold one request against the period, or raise QuotaExceeded when it would pass the spending cap."""
        ledger = self._ledger(account_id, period, load)
        if refused := over_cap(ledger.used, ledger.pending, monthly_limit, overage_per_1k, cap):
            raise refused
        ledger.pending += 1
        return QuotaHold(account_id, period)

    def release(self, hold: QuotaHold) -> None:
        """The request failed: it does not count."""
        if not hold.done:
            hold.done = True
            ledger = self._ledgers.get((hold.account_id, hold.period))
            if ledger is not None:
                ledger.pending -= 1

    def commit(self, hold: QuotaHold, monthly_limit: int) -> QuotaResult:
        """The request succeeded: it counts. Returns whether it is overage and any alert thresholds now crossed."""
        ledger = self._ledgers.get((hold.account_id, hold.period))
        if hold.done or ledger is None:
            return QuotaResult(False, 0)
        hold.done = True
        ledger.pending -= 1
        ledger.used += 1
        crossed = [t for t in crossed_thresholds(ledger.used, monthly_limit) if t not in ledger.alerted]
        ledger.alerted.update(crossed)
        return QuotaResult(ledger.used > monthly_limit, ledger.used, crossed)


# Failed API-key attempts per source address: a burst of this many, refilled over the window.
FAILED_KEY_BURST = 20
FAILED_KEY_WINDOW_S = 60.0
# Addresses remembered at most; past it the least recently refused one is forgotten.
FAILED_KEY_ADDRESSES = 4096


def address_bucket(address: str) -> str:
    """The unit a client is limited by: an IPv4 address, or an IPv6 address's /64 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class FailedKeyLimiter:
    """Refused API keys per client address, as GCRA: `burst` failures at once, then one more every
    window/burst seconds. While an address is over, its wrong keys get `blocked_error` (429) and are
    not counted; its valid keys are served (the auth middleware checks the key first). Memory is
    bounded: at most `max_addresses` entries, and an entry whose allowance is full again is dropped.
    """

    def __init__(
        self,
        burst: int = FAILED_KEY_BURST,
        window_s: float = FAILED_KEY_WINDOW_S,
        max_addresses: int = FAILED_KEY_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self._interval = window_s / burst
        self._max = max_addresses
        self._clock = clock
        # bucket -> theoretical arrival time; ordered by last failure, oldest first.
        self._tat: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    def retry_after(self, address: str) -> float:
        """Seconds until a wrong key from `address` is counted (401) rather than refused (429); 0 now."""
        bucket = address_bucket(address)
        tat = self._tat.get(bucket)
        if tat is None:
            return 0.0
        now = self._clock()
        if tat <= now:
            del self._tat[bucket]
            return 0.0
        return max(0.0, tat - now - (self.burst - 1) * self._interval)

    def failed(self, address: str) -> int:
        """Record one refused key; returns the failures now counted against the address."""
        bucket = address_bucket(address)
        now = self._clock()
        tat = max(self._tat.pop(bucket, now), now) + self._interval
        self._tat[bucket] = tat
        while len(self._tat) > self._max:
            self._tat.popitem(last=False)
        return math.ceil((tat - now) / self._interval - _EPS)

    def blocked_error(self, wait: float) -> RateLimited:
        return RateLimited(
            "Too many requests with an invalid API key from your address. "
            f"Please try again in {duration(wait)}, with a valid key.",
            headers={
                "Retry-After": str(max(1, math.ceil(wait - _EPS))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000 - _EPS))),
            },
        )
