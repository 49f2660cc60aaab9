"""Metering: rate limits and the spending cap on the way in; on the way out the token settlement,
the quota count, its alerts (log, store, webhook), the usage record and the traffic counters.
Also the caller's usage report, read from the same records.

A single box counts limits and quotas in memory (core/limits.py). A cluster on PostgreSQL counts
them in the shared database (store/shared_limits.py), so they are exact across its nodes: the
request's quota count and its usage record are then one transaction, and an alert crossed is
recorded, and sent, by whichever node's request crossed it, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import msgspec

from appliance.core import protocol as p
from appliance.core.errors import AlveareError
from appliance.core.limits import (
    Admission,
    QuotaBook,
    QuotaHold,
    RateLimiter,
    RateState,
    crossed_thresholds,
    key_limits,
    rate_state,
    too_large,
)
from appliance.engine.interface import Timing
from appliance.serving.metrics import TenantMetrics
from appliance.serving.stages import Stages
from appliance.serving.tracing import NO_TRACE, Trace
from appliance.serving.traffic import Traffic
from appliance.store import Principal, Store, UsageRecord, current_period, now_iso
from appliance.store.shared_limits import SharedLimits
from appliance.store.sql import Db
from appliance.store.usage import insert_alert, insert_usage

log = logging.getLogger("alveare.service")
WEBHOOK_TIMEOUT_S = 5.0
# The longest an answer waits for its usage record's commit (a cluster's database not answering).
RECORD_WAIT_S = 3.0


@dataclass
class MeteredCall:
    """One API call as the API layer sees it: who calls, and the rate-limit state to report."""

    principal: Principal
    endpoint: str
    rate: RateState | None = None
    # The request's id, for errors the service reports itself (an error event inside a stream).
    request_id: str | None = None
    # Its trace (tracing.py): records nothing unless tracing is on.
    trace: Trace = NO_TRACE


@dataclass
class Meter:
    """A metered request, from admission to its usage record."""

    call: MeteredCall
    # time.monotonic(), the engine's clock: its stages are measured from here (stages.py).
    t0: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=now_iso)
    period: str = field(default_factory=current_period)
    specialist: str | None = None
    admission: Admission | None = None
    hold: QuotaHold | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The engine's stamps of the request's generations, once they are submitted.
    timings: list[Timing] = field(default_factory=list)
    done: bool = False


def status_of(exc: BaseException) -> int:
    if isinstance(exc, AlveareError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return 499  # the client went away
    return 500


class Metering:
    def __init__(
        self,
        limiter: RateLimiter,
        quota: QuotaBook,
        store: Store,
        traffic: Traffic,
        metrics: TenantMetrics,
        *,
        webhook_url: str | None = None,
        shared: SharedLimits | None = None,
    ) -> None:
        self.limiter = limiter
        self.quota = quota
        # A cluster's limits (in its PostgreSQL), in place of the limiter's and the quota book's.
        self.shared = shared
        self.store = store
        self.traffic = traffic
        self.metrics = metrics
        self.webhook_url = webhook_url

    def rate_state(self, principal: Principal) -> RateState:
        """The key's rate-limit state now, for the headers of a response that was not admitted."""
        rpm, tpm = key_limits(principal.plan.requests_per_minute, principal.plan.tokens_per_minute, principal.test)
        if self.shared is not None:  # as this node last saw it: no database read on the event loop
            return self.shared.last.get(principal.key_id) or rate_state(rpm, tpm, 0.0, 0.0, 0.0)
        return self.limiter.peek(principal.key_id, rpm, tpm)

    @contextlib.contextmanager
    def metered(self, meter: Meter) -> Iterator[Meter]:
        """Any failure inside is recorded with its status, then raised."""
        try:
            yield meter
        except BaseException as exc:
            self.finish(meter, status_of(exc))
            raise

    def _quota_loader(self, account_id: int, period: str) -> Callable[[], tuple[int, set[int]]]:
        return lambda: (
            self.store.billable_requests(account_id, period),
            self.store.alert_thresholds(account_id, period),
        )

    def read_quota(self, meter: Meter) -> tuple[int, set[int]] | None:
        """The account's count for the period from the store, unless it is in memory already. Called in a
        worker thread before admission (see `use_quota`); None when there is nothing to read."""
        principal = meter.call.principal
        if self.shared is not None or principal.test or self.quota.knows(principal.account_id, meter.period):
            return None
        return self._quota_loader(principal.account_id, meter.period)()

    def use_quota(self, meter: Meter, loaded: tuple[int, set[int]] | None) -> None:
        """On the event loop: adopt what `read_quota` read, unless another request did first."""
        principal = meter.call.principal
        if loaded is not None:
            self.quota.used(principal.account_id, meter.period, lambda: loaded)

    def admit(self, meter: Meter, specialist: str, tokens: int) -> None:
        """Spending cap, then rate limits for `tokens` (prompt plus the completion budget): check and
        take both at once, or take nothing (no await here; a cluster's: in a worker thread)."""
        if self.shared is not None:
            return self._admit_shared(self.shared, meter, specialist, tokens)
        principal = meter.call.principal
        meter.specialist = specialist
        plan = principal.plan
        hold = None
        if not principal.test:
            hold = self.quota.reserve(
                principal.account_id,
                meter.period,
                self._quota_loader(principal.account_id, meter.period),
                monthly_limit=plan.requests_per_month,
                overage_per_1k=plan.overage_per_1k_requests,
                cap=principal.spending_cap,
            )
        rpm, tpm = key_limits(plan.requests_per_minute, plan.tokens_per_minute, principal.test)
        try:
            meter.admission = self.limiter.admit(principal.key_id, rpm, tpm, tokens)
        except BaseException:
            if hold is not None:
                self.quota.release(hold)
            raise
        meter.hold = hold
        meter.call.rate = meter.admission.state

    def _admit_shared(self, shared: SharedLimits, meter: Meter, specialist: str, tokens: int) -> None:
        principal = meter.call.principal
        meter.specialist = specialist
        plan = principal.plan
        rpm, tpm = key_limits(plan.requests_per_minute, plan.tokens_per_minute, principal.test)
        if refused := too_large(tokens, tpm):
            raise refused
        hold = None
        if not principal.test:
            shared.hold(
                principal.account_id,
                meter.period,
                plan.requests_per_month,
                plan.overage_per_1k_requests,
                principal.spending_cap,
            )
            hold = QuotaHold(principal.account_id, meter.period)
        try:
            state = shared.take(principal.key_id, rpm, tpm, tokens)
        except BaseException:
            if hold is not None:
                shared.release(hold.account_id, hold.period).add_done_callback(_log_failed_write)
            raise
        meter.admission = Admission(principal.key_id, tpm, tokens, state)
        meter.hold = hold
        meter.call.rate = state

    def finish(self, meter: Meter, status: int) -> Future[None] | None:
        """Settle the token estimate, count the request (or not), record it. Once per request."""
        if meter.done:
            return None
        with meter.call.trace.step("metering"):
            return self._settle(meter, status)

    async def succeeded(self, meter: Meter) -> None:
        """Record a success and wait for its commit, so an answered request is a durable one. A
        cluster's database that does not answer is waited for RECORD_WAIT_S at most: the record stays
        queued until it answers, and the caller gets its answer now."""
        if meter.done:
            return
        with meter.call.trace.step("metering"):
            future = self._settle(meter, 200)
            with contextlib.suppress(Exception):
                wait = RECORD_WAIT_S if self.shared is not None else None
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait)

    def _settle(self, meter: Meter, status: int) -> Future[None]:
        meter.done = True
        principal = meter.call.principal
        generated = meter.completion_tokens  # a failure's trace still shows what it generated
        if status >= 400:
            meter.prompt_tokens = meter.completion_tokens = 0
        if self.shared is not None:
            return self._settle_shared(self.shared, meter, status, generated)
        if meter.admission is not None:
            self.limiter.settle(meter.admission, meter.prompt_tokens + meter.completion_tokens)
        overage = False
        if meter.hold is not None:
            if status < 400:
                result = self.quota.commit(meter.hold, principal.plan.requests_per_month)
                overage = result.overage
                for threshold in result.new_alerts:
                    self._alert(principal, meter.period, threshold, result.requests_used)
            else:
                self.quota.release(meter.hold)
        record = self._record(meter, status, overage=overage)
        self.traffic.record(status, meter.prompt_tokens + meter.completion_tokens)
        self._observe(meter, status, generated)
        future = self.store.record_usage(record)
        future.add_done_callback(_log_failed_write)
        return future

    @staticmethod
    def _record(meter: Meter, status: int, *, overage: bool) -> UsageRecord:
        principal = meter.call.principal
        return UsageRecord(
            key_id=principal.key_id,
            account_id=principal.account_id,
            endpoint=meter.call.endpoint,
            specialist=meter.specialist,
            prompt_tokens=meter.prompt_tokens,
            completion_tokens=meter.completion_tokens,
            latency_ms=round((time.monotonic() - meter.t0) * 1000),
            status=status,
            created_at=meter.created_at,
            period=meter.period,
            test=principal.test,
            overage=overage,
        )

    def _settle_shared(self, shared: SharedLimits, meter: Meter, status: int, generated: int) -> Future[None]:
        """A cluster's settlement: the token refund queued, and the quota count, the usage record and
        any alert it crosses in one write job (one transaction)."""
        principal = meter.call.principal
        admission, hold = meter.admission, meter.hold
        if admission is not None and not admission.settled:
            admission.settled = True
            actual = meter.prompt_tokens + meter.completion_tokens
            shared.settle(admission.key_id, admission.tokens_per_minute, admission.estimate, actual).add_done_callback(
                _log_failed_write
            )
        if hold is not None and status >= 400:
            shared.release(hold.account_id, hold.period).add_done_callback(_log_failed_write)
        record = self._record(meter, status, overage=False)
        limit = principal.plan.requests_per_month

        def job(db: Db) -> tuple[int, list[int]]:
            if hold is None or status >= 400:
                insert_usage(db, record)
                return 0, []
            used = shared.commit(db, hold.account_id, hold.period)
            insert_usage(db, msgspec.structs.replace(record, overage=used > limit))
            new = [
                t
                for t in crossed_thresholds(used, limit)
                if insert_alert(db, hold.account_id, hold.period, t, used, limit)
            ]
            return used, new

        self.traffic.record(status, meter.prompt_tokens + meter.completion_tokens)
        self._observe(meter, status, generated)
        alerts = self.store.submit(job, keep=True)  # a usage record: never lost to an outage
        done: Future[None] = Future()

        def committed(f: Future[tuple[int, list[int]]]) -> None:
            error = f.exception()
            if error is None:
                used, new = f.result()
                for threshold in new:  # this node's request crossed it: it tells, once
                    self._notify(principal, meter.period, threshold, used)
                done.set_result(None)
            else:
                done.set_exception(error)

        alerts.add_done_callback(committed)
        done.add_done_callback(_log_failed_write)
        return done

    def _observe(self, meter: Meter, status: int, generated: int) -> None:
        """The request in the per-tenant metrics and its trace: who, which specialist, tokens, stages."""
        specialist = meter.specialist or ""
        stages = Stages.of(meter.t0, meter.timings)
        account = meter.call.principal.account
        self.metrics.finished(account, specialist, status, meter.prompt_tokens, meter.completion_tokens, stages)
        trace = meter.call.trace
        trace.stages(stages, generated)
        trace.set(
            {
                "alveare.endpoint": meter.call.endpoint,
                "alveare.specialist": specialist,
                "gen_ai.usage.input_tokens": meter.prompt_tokens,
                "gen_ai.usage.output_tokens": meter.completion_tokens,
            }
        )

    def _alert(self, principal: Principal, period: str, threshold: int, used: int) -> None:
        limit = principal.plan.requests_per_month
        self.store.record_alert(principal.account_id, period, threshold, used, limit).add_done_callback(
            _log_failed_write
        )
        self._notify(principal, period, threshold, used)

    def _notify(self, principal: Principal, period: str, threshold: int, used: int) -> None:
        """An alert crossed: the log line, and the webhook when one is set."""
        limit = principal.plan.requests_per_month
        log.warning(
            "usage alert: account %s reached %d%% of its monthly requests (%d of %d, period %s)",
            principal.account,
            threshold,
            used,
            limit,
            period,
        )
        if self.webhook_url:
            payload = {
                "type": "usage_alert",
                "account": principal.account,
                "plan": principal.plan.name,
                "period": period,
                "threshold_percent": threshold,
                "requests_used": used,
                "requests_limit": limit,
                "created_at": now_iso(),
            }
            threading.Thread(
                target=_post_webhook, args=(self.webhook_url, payload), name="alveare-webhook", daemon=True
            ).start()

    async def usage_report(self, principal: Principal) -> p.UsageReport:
        """The caller's account, current period, from the records committed so far."""
        await asyncio.wrap_future(self.store.flush())
        s = await asyncio.to_thread(self.store.usage_summary, principal.account)
        return p.UsageReport(
            period_start=s.period_start,
            period_end=s.period_end,
            requests_used=s.requests_used,
            requests_limit=s.requests_limit,
            tokens_used=s.tokens_used,
            by_specialist=s.by_specialist,
            plan=s.plan,
            overage_requests=s.overage_requests,
            spending=s.spending,
            spending_cap=s.spending_cap,
            test_requests=s.test_requests,
        )


def _log_failed_write(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("usage could not be written: %s", future.exception())


def _post_webhook(url: str, payload: dict) -> None:
    """Fire and forget, in its own thread: a failing webhook is logged, never raised."""
    # Only where a webhook is set: its import stays resident in the server for good (alveare/__init__.py;
    # docs/decisions/007-host-memory-costs.md).
    import httpx

    try:
        r = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        if r.status_code >= 400:
            log.warning("webhook %s answered %s", url, r.status_code)
    except httpx.HTTPError as exc:
        log.warning("webhook %s failed: %s", url, exc)
