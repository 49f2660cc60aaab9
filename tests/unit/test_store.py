from __future__ import annotations

import pytest

from appliance.errors import Conflict, InvalidRequest, NotFound
from appliance.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


def test_seeded_plans(store: Store) -> None:
    plans = {p.name: p for p in store.plans()}
    assert (plans["solo"].requests_per_minute, plans["solo"].requests_per_month) == (20, 10_000)
    assert (plans["starter"].requests_per_minute, plans["starter"].requests_per_month) == (100, 100_000)
    assert (plans["professional"].requests_per_minute, plans["professional"].requests_per_month) == (500, 500_000)
    assert (plans["scale"].requests_per_minute, plans["scale"].requests_per_month) == (2000, 2_000_000)
    assert plans["professional"].custom_prompts and not plans["starter"].custom_prompts


def test_key_authenticates_and_is_stored_hashed(store: Store, tmp_path) -> None:
    store.create_account("acme", "starter")
    created = store.create_key("acme")
    principal = store.authenticate(created.key)
    assert principal is not None and principal.account == "acme" and principal.plan.name == "starter"
    other = "y" if created.key.endswith("x") else "x"
    assert store.authenticate(created.key[:-1] + other) is None
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("alveare.db"))
    assert created.key.encode() not in raw
    assert created.key[17:].encode() not in raw


def test_five_active_keys_at_most(store: Store) -> None:
    store.create_account("acme")
    keys = [store.create_key("acme") for _ in range(5)]
    with pytest.raises(Conflict, match="5 active keys"):
        store.create_key("acme")
    store.revoke_key(keys[0].prefix)
    store.create_key("acme")


def test_revoke_by_prefix(store: Store) -> None:
    store.create_account("acme")
    key = store.create_key("acme")
    with pytest.raises(InvalidRequest):
        store.revoke_key("alv_")
    with pytest.raises(NotFound):
        store.revoke_key("alv_live_zzzzzzzz")
    revoked = store.revoke_key(key.prefix)
    assert revoked.revoked_at is not None
    assert store.authenticate(key.key) is None
    with pytest.raises(NotFound):
        store.revoke_key(key.prefix)


def test_accounts(store: Store) -> None:
    store.create_account("acme", "solo")
    with pytest.raises(Conflict):
        store.create_account("acme")
    with pytest.raises(NotFound, match="Plans: solo, starter"):
        store.create_account("beta", "platinum")
    with pytest.raises(InvalidRequest):
        store.create_account("bad name!")
    assert [a.name for a in store.accounts()] == ["acme"]


def test_admin_key_created_once(store: Store) -> None:
    first = store.ensure_admin()
    assert first is not None
    assert store.ensure_admin() is None
    principal = store.authenticate(first.key)
    assert principal is not None and principal.admin


def test_migrations_are_idempotent(tmp_path) -> None:
    Store(tmp_path).close()
    Store(tmp_path).close()
