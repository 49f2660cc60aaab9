"""Fixtures for the TUI tests: a real LocalAdmin on a temp data dir, seeded when asked, and a Pilot helper."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.admin.local import LocalAdmin
from appliance.core import security
from appliance.core.specialists import load_specialists
from appliance.store import Store, UsageRecord
from appliance.store import clock as store_clock

PERIOD = "2026-03"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[LocalAdmin]:
    """A LocalAdmin on a fresh data dir: what `alveare tui` uses when no server runs."""
    local = LocalAdmin(Store(tmp_path / "data"), load_specialists(None))
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stable timestamps and keys, so snapshots do not change from run to run."""
    ticks = itertools.count()

    def now_iso() -> str:
        n = next(ticks)
        return f"2026-03-{1 + n // 24 % 28:02d}T{n % 24:02d}:15:00.000000Z"

    rng = random.Random(1234)

    def generate_key(test: bool = False) -> str:
        prefix = security.TEST_PREFIX if test else security.LIVE_PREFIX
        body = "".join(rng.choice(security.ALPHABET) for _ in range(security._BODY))
        return prefix + body + security._checksum(prefix + body)

    monkeypatch.setattr(store_clock, "now_iso", now_iso)
    monkeypatch.setattr(security, "generate_key", generate_key)


def seed(admin: LocalAdmin) -> None:
    """A small, fixed appliance: four accounts on different plans, keys, a cap, custom prompts,
    a month of usage (2026-03) with one account past its 75% and 90% alerts."""
    admin.create_account("acme-support", "professional")
    admin.create_account("globex", "solo")
    admin.create_account("initech-analytics", "scale")
    admin.create_account("umbrella", "starter")
    admin.create_key("acme-support")
    admin.create_key("acme-support", test=True)
    admin.create_key("globex")
    admin.create_key("initech-analytics")
    revoked = admin.create_key("umbrella")
    admin.revoke_key(revoked.prefix)
    admin.set_spending_cap("globex", 25.0)
    admin.set_custom_prompt(
        "acme-support", "summarise", "You are a financial analyst. Summarise reports as three bullet points."
    )
    admin.set_plan("solo", requests_per_month=200)
    store = admin.store
    accounts = {o.account.name: o.account for o in admin.accounts(PERIOD)}
    live = [k for k in admin.keys(None) if not k.test and k.revoked_at is None]
    keys = {k.account: k for k in live}
    specialists = ["summarise", "classify", "chat", "extract"]
    for day in range(1, 29):
        for i in range((day * 7) % 11 + 1):
            account = ["acme-support", "globex", "initech-analytics"][(day + i) % 3]
            store.record_usage(
                UsageRecord(
                    key_id=keys[account].id,
                    account_id=accounts[account].id,
                    endpoint="/v1/chat/completions",
                    specialist=specialists[(day + 2 * i) % 4],
                    prompt_tokens=40 + 3 * i,
                    completion_tokens=20 + day,
                    latency_ms=300,
                    status=429 if (day + i) % 13 == 0 else 200,
                    created_at=f"{PERIOD}-{day:02d}T10:{i:02d}:00.000000Z",
                    period=PERIOD,
                    test=False,
                )
            )
    store.flush().result()
    globex = accounts["globex"]
    for threshold in (75, 90):
        store.record_alert(globex.id, PERIOD, threshold, threshold * 2, 200).result()


@pytest.fixture
def seeded(admin: LocalAdmin, frozen: None) -> LocalAdmin:
    seed(admin)
    return admin
