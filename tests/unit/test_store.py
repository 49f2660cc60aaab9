from __future__ import annotations

import pytest

from appliance.core.errors import Conflict, InvalidRequest, NotFound
from appliance.store import Store


@pytest.fixture
def store(tmp_path, store_database):
    """The store on each back end: SQLite in tmp_path, or a fresh PostgreSQL database."""
    s = Store(tmp_path, database=store_database)
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
    stored = str(store._rows("SELECT * FROM api_keys"))
    assert created.key not in stored and created.key[17:] not in stored
    if store.dialect == "sqlite":
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


def test_migrations_are_idempotent(tmp_path, store_database) -> None:
    Store(tmp_path, database=store_database).close()
    Store(tmp_path, database=store_database).close()


def test_ambiguous_prefix_is_refused(store: Store, monkeypatch) -> None:
    from appliance.core import security

    store.create_account("acme")
    made = iter(["AAAA" + "b" * 29, "AAAA" + "c" * 29])

    def same_start(test: bool = False) -> str:
        prefix = security.TEST_PREFIX if test else security.LIVE_PREFIX
        body = next(made)
        return prefix + body + security._checksum(prefix + body)

    monkeypatch.setattr(security, "generate_key", same_start)
    first, second = store.create_key("acme"), store.create_key("acme")
    with pytest.raises(Conflict, match="2 active keys start with"):
        store.revoke_key("alv_live_AAAA")
    store.revoke_key(first.prefix[:-1] + "b")
    assert store.authenticate(first.key) is None and store.authenticate(second.key) is not None


def test_concurrent_usage_writes_are_all_committed(store: Store) -> None:
    import threading

    from appliance.store import UsageRecord, current_period, now_iso

    store.create_account("acme", "solo")
    key = store.create_key("acme")
    principal = store.authenticate(key.key)
    assert principal is not None
    period = current_period()

    def write(n: int) -> None:
        for i in range(50):
            store.record_usage(
                UsageRecord(
                    key_id=principal.key_id,
                    account_id=principal.account_id,
                    endpoint="chat.completions",
                    specialist="chat" if i % 2 else "qa",
                    prompt_tokens=10,
                    completion_tokens=n,
                    latency_ms=5,
                    status=200 if i % 10 else 429,
                    created_at=now_iso(),
                    period=period,
                    test=n == 3,
                )
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush().result()
    summary = store.usage_summary("acme")
    assert store.usage_count("acme") == 200
    assert summary.requests_used == store.billable_requests(principal.account_id, period) == 3 * 45
    # the test key's 5 refusals (429) are neither test requests nor (live) failures
    assert summary.test_requests == 45 and summary.failed_requests == 15
    assert summary.tokens_used == 45 * (10 * 3 + 0 + 1 + 2)
    assert summary.by_specialist == {"chat": 75, "qa": 60}
    assert store.keys("acme")[0].last_used_at is not None


def test_alerts_are_recorded_once(store: Store) -> None:
    acct = store.create_account("acme", "solo")
    assert store.record_alert(acct.id, "2026-03", 75, 7500, 10_000).result() is True
    assert store.record_alert(acct.id, "2026-03", 75, 7501, 10_000).result() is False
    assert store.alert_thresholds(acct.id, "2026-03") == {75}
    assert [a.threshold for a in store.alerts("acme")] == [75]


def test_custom_prompts_and_plan_edits(store: Store) -> None:
    acct = store.create_account("acme", "professional")
    store.set_custom_prompt(acct.id, "chat", "Be brief.").result()
    assert store.custom_prompt(acct.id, "chat") == "Be brief."
    assert store.delete_custom_prompt(acct.id, "chat").result() is True
    assert store.custom_prompt(acct.id, "chat") is None
    plan, created = store.set_plan("tiny", requests_per_minute=3)
    assert created and plan.requests_per_minute == 3 and plan.requests_per_month == 100_000
    plan, created = store.set_plan("solo", requests_per_month=5)
    assert not created and plan.requests_per_month == 5 and plan.requests_per_minute == 20
    with pytest.raises(InvalidRequest):
        store.set_plan("solo", requests_per_minute=0)
    assert store.set_spending_cap("acme", 10).spending_cap == 10
    assert store.set_account_plan("acme", "tiny").plan == "tiny"
    with pytest.raises(InvalidRequest, match="allows 6"):
        store.set_specialists("acme", ["a", "b", "c", "d", "e", "f", "g"])


def test_periods() -> None:
    from appliance.store import period_bounds

    assert period_bounds("2026-03") == ("2026-03-01T00:00:00Z", "2026-03-31T23:59:59Z")
    assert period_bounds("2028-02")[1] == "2028-02-29T23:59:59Z"
    with pytest.raises(InvalidRequest):
        period_bounds("2026-13")


def _use(
    store: Store,
    key: str,
    *,
    specialist: str = "chat",
    status: int = 200,
    tokens: tuple[int, int] = (10, 5),
    created_at: str | None = None,
) -> None:
    from appliance.store import UsageRecord, current_period, now_iso

    principal = store.authenticate(key)
    assert principal is not None
    store.record_usage(
        UsageRecord(
            key_id=principal.key_id,
            account_id=principal.account_id,
            endpoint="chat.completions",
            specialist=specialist,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            latency_ms=5,
            status=status,
            created_at=created_at or now_iso(),
            period=(created_at or now_iso())[:7] if created_at else current_period(),
            test=principal.test,
        )
    ).result()


def test_admin_keys_are_outside_the_five_key_limit(store: Store) -> None:
    store.ensure_admin()
    for _ in range(5):
        store.create_key("admin")
    with pytest.raises(Conflict, match="5 active keys"):
        store.create_key("admin")
    admin = store.create_key("admin", admin=True)
    principal = store.authenticate(admin.key)
    assert principal is not None and principal.admin


def test_keys_count_their_requests(store: Store) -> None:
    store.create_account("acme")
    a, b = store.create_key("acme"), store.create_key("acme")
    _use(store, a.key)
    _use(store, a.key, status=500)
    counts = {k.prefix: k.requests for k in store.keys("acme")}
    assert counts == {a.prefix: 2, b.prefix: 0}


def test_account_overviews(store: Store) -> None:
    acct = store.create_account("acme", "solo")
    store.create_account("idle")
    key = store.create_key("acme")
    store.create_key("acme")
    store.revoke_key(store.create_key("acme").prefix)
    _use(store, key.key)
    store.record_alert(acct.id, "2026-03", 75, 7500, 10_000).result()
    store.record_alert(acct.id, "2026-03", 90, 9000, 10_000).result()
    now = {o.account.name: o for o in store.account_overviews()}
    assert set(now) == {"acme", "idle"}
    assert now["acme"].usage.requests_used == 1 and now["acme"].active_keys == 2 and now["acme"].alert_level == 0
    assert now["idle"].usage.requests_used == 0 and now["idle"].active_keys == 0
    march = {o.account.name: o for o in store.account_overviews("2026-03")}
    assert march["acme"].alert_level == 90 and march["acme"].usage.requests_used == 0
    with pytest.raises(InvalidRequest):
        store.account_overviews("March")


def test_usage_breakdown(store: Store) -> None:
    store.create_account("acme")
    store.create_account("beta")
    live, test = store.create_key("acme"), store.create_key("acme", test=True)
    other = store.create_key("beta")
    _use(store, live.key, specialist="chat", tokens=(10, 5))
    _use(store, live.key, specialist="qa", tokens=(1, 1))
    _use(store, live.key, specialist="qa", status=429)
    _use(store, test.key, specialist="chat")
    _use(store, test.key, specialist="chat", status=429)  # a refused test request is not counted
    _use(store, other.key, specialist="chat", tokens=(100, 0))
    _use(store, other.key, created_at="2026-03-04T10:00:00.000000Z")

    all_now = store.usage_breakdown()
    rows = {r.name: r for r in all_now.by_account}
    assert (rows["acme"].requests, rows["acme"].tokens, rows["acme"].failed, rows["acme"].test) == (2, 17, 1, 1)
    assert (rows["beta"].requests, rows["beta"].tokens) == (1, 100)
    assert all_now.by_account[0].name == "acme"  # most requests first
    keys = {r.name: r for r in all_now.by_key}
    assert keys[live.prefix].requests == 2 and keys[test.prefix].test == 1 and keys[other.prefix].tokens == 100
    specialists = {r.name: r for r in all_now.by_specialist}
    assert (specialists["chat"].requests, specialists["qa"].requests, specialists["qa"].failed) == (2, 1, 1)
    assert len(all_now.by_day) == 1 and all_now.by_day[0].requests == 3 and all_now.by_day[0].failed == 1

    acme = store.usage_breakdown("acme")
    assert acme.account == "acme" and [r.name for r in acme.by_account] == ["acme"]
    march = store.usage_breakdown(period="2026-03")
    assert [(d.day, d.requests) for d in march.by_day] == [("2026-03-04", 1)]
    with pytest.raises(NotFound):
        store.usage_breakdown("nobody")


def test_specialist_overrides(store: Store) -> None:
    assert store.specialist_override("chat") is None
    first = store.set_specialist_override("chat", system_prompt="Be terse.")
    assert (first.system_prompt, first.temperature) == ("Be terse.", None)
    merged = store.set_specialist_override("chat", temperature=0.0, max_tokens=20)
    assert (merged.system_prompt, merged.temperature, merged.max_tokens, merged.top_p) == ("Be terse.", 0.0, 20, None)
    assert list(store.specialist_overrides()) == ["chat"]
    assert store.delete_specialist_override("chat") is True
    assert store.delete_specialist_override("chat") is False
    assert store.specialist_override("chat") is None
