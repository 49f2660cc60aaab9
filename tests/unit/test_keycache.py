"""The in-memory key cache: any change to a key, its account or its plan, by any process, applies at once."""

from __future__ import annotations

import asyncio

import pytest

from appliance.api.keycache import KeyCache
from appliance.store import Store, UsageRecord, current_period, now_iso


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


def test_revocation_by_another_process_applies_to_the_next_request(store: Store, tmp_path) -> None:
    store.create_account("acme", "starter")
    key = store.create_key("acme")
    cache = KeyCache(store)

    async def scenario() -> None:
        first = await cache.authenticate(key.key)
        assert first is not None and first.plan.name == "starter"
        assert await cache.authenticate(key.key) is first  # served from memory
        other = Store(tmp_path, create=False)  # the CLI, on the same data dir
        try:
            other.set_account_plan("acme", "scale")
            changed = await cache.authenticate(key.key)
            assert changed is not None and changed.plan.name == "scale"
            other.revoke_key(key.prefix)
        finally:
            other.close()
        assert await cache.authenticate(key.key) is None

    asyncio.run(scenario())


def test_usage_writes_leave_the_auth_version_alone(store: Store) -> None:
    store.create_account("acme")
    key = store.create_key("acme")
    principal = store.authenticate(key.key)
    assert principal is not None
    version = store.auth_version()
    record = UsageRecord(
        principal.key_id, principal.account_id, "chat", None, 1, 1, 5, 200, now_iso(), current_period(), False
    )
    store.record_usage(record).result()  # also the key's last use
    assert store.auth_version() == version
    store.revoke_key(key.prefix)
    assert store.auth_version() > version


def test_any_authenticated_request_marks_the_keys_last_use_at_most_once_a_minute(store: Store) -> None:
    store.create_account("acme")
    key = store.create_key("acme")
    now = [1000.0]
    cache = KeyCache(store, clock=lambda: now[0])

    def last_used() -> str | None:
        store.flush().result()
        return store.keys("acme")[0].last_used_at

    assert last_used() is None
    version = store.auth_version()

    async def authenticate() -> None:
        assert await cache.authenticate(key.key) is not None

    asyncio.run(authenticate())  # no metering here: any authenticated request counts
    first = last_used()
    assert first is not None
    now[0] += 59
    asyncio.run(authenticate())
    assert last_used() == first  # within the minute: no write
    now[0] += 2
    asyncio.run(authenticate())
    assert last_used() is not None and last_used() > first  # type: ignore[operator]
    assert store.auth_version() == version  # the marks never empty the key cache


def test_a_keys_last_use_never_moves_back(store: Store) -> None:
    store.create_account("acme")
    key = store.create_key("acme")
    principal = store.authenticate(key.key)
    assert principal is not None
    store.mark_key_used(principal.key_id, "2026-03-02T10:00:00.000000Z").result()
    # A slow request that started earlier is metered later: its start is not the key's last use.
    record = UsageRecord(
        principal.key_id,
        principal.account_id,
        "chat",
        None,
        1,
        1,
        5,
        200,
        "2026-03-02T09:59:00.000000Z",
        "2026-03",
        False,
    )
    store.record_usage(record).result()
    assert store.keys("acme")[0].last_used_at == "2026-03-02T10:00:00.000000Z"
