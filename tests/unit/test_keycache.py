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
