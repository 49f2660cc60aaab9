"""A cluster's limits in PostgreSQL (store/shared_limits.py), with several nodes (Store instances,
each with its own pool) racing: a key's per-minute limit admits exactly the limit, a spending cap is
never passed, a refusal says how long to wait, and finished requests settle their tokens."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from appliance.core.errors import QuotaExceeded, RateLimited
from appliance.store import Store
from appliance.store.shared_limits import SharedLimits


@pytest.fixture
def nodes(tmp_path: Path, postgres):
    url = postgres.new_database()
    stores = [Store(tmp_path / f"n{i}", database=url) for i in range(3)]
    yield [SharedLimits(s, node=f"node{i}") for i, s in enumerate(stores)]
    for s in stores:
        s.close()


def race(nodes: list[SharedLimits], n: int, attempt) -> tuple[int, list[BaseException]]:
    """`n` attempts at once, spread over the nodes; returns how many passed and the refusals."""
    passed, refused, lock = [0], [], threading.Lock()
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        try:
            attempt(nodes[i % len(nodes)])
        except (RateLimited, QuotaExceeded) as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                passed[0] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return passed[0], refused


def test_a_per_minute_limit_admits_exactly_the_limit_across_nodes(nodes) -> None:
    passed, refused = race(nodes, 30, lambda node: node.take(1, 20, 100_000, 10))
    assert passed == 20 and len(refused) == 10  # per-node counting would admit 30 (or 60 at 20 each)
    assert all("requests per minute" in r.message for r in refused)
    assert all(1 <= int(r.headers["Retry-After"]) <= 3 for r in refused)  # one request's refill: 3 s
    with pytest.raises(RateLimited):
        nodes[0].take(1, 20, 100_000, 10)
    state = nodes[0].last[1]  # what the refusal saw: the headers of answers that took nothing say it
    assert state.limit_requests == 20 and state.remaining_requests == 0


def test_tokens_are_limited_and_settled(nodes) -> None:
    node = nodes[0]
    node.take(7, 1000, 100, 60)
    with pytest.raises(RateLimited, match="tokens per minute"):
        nodes[1].take(7, 1000, 100, 60)  # 120 of 100
    node.settle(7, 100, estimate=60, actual=10).result()  # it used 10: 50 come back
    assert nodes[2].take(7, 1000, 100, 60).remaining_tokens == 30


def test_a_spending_cap_is_never_passed_across_nodes(nodes) -> None:
    # 5 requests a month, then 1.0 per request, capped at 3.0: 8 requests at most.
    store = nodes[0].store
    store.create_account("acme")
    account = store.account("acme").id

    def hold_acme(node: SharedLimits) -> None:
        node.hold(account, "2026-12", 5, 1000.0, 3.0)

    passed, refused = race(nodes, 20, hold_acme)
    assert passed == 8 and len(refused) == 12
    assert all("spending cap" in r.message for r in refused)
    nodes[1].release(account, "2026-12").result()  # one failed: its hold frees a place
    hold_acme(nodes[2])
    with pytest.raises(QuotaExceeded):
        hold_acme(nodes[0])

    assert store.submit(lambda db: nodes[2].commit(db, account, "2026-12")).result() == 1  # one finished: it counts


def test_without_a_cap_every_request_is_held_and_counted(nodes) -> None:
    store = nodes[0].store
    store.create_account("acme")
    account = store.account("acme").id
    passed, _ = race(nodes, 12, lambda node: node.hold(account, "2026-12", 5, 1000.0, None))
    assert passed == 12
    row = store._rows("SELECT used, reserved FROM quota_ledger WHERE account_id = ?", [account])[0]
    assert row == (0, 12)


def test_a_killed_nodes_holds_come_back_when_it_starts_again_or_when_it_stays_silent(nodes) -> None:
    from appliance.store.shared_limits import HOLDS_EXPIRE_S

    store = nodes[0].store
    store.create_account("acme")
    account = store.account("acme").id

    def hold(node: SharedLimits) -> None:
        node.hold(account, "2026-12", 5, 1000.0, 3.0)  # 8 at most

    for _ in range(5):
        hold(nodes[0])  # node0 is killed with these five running
    for _ in range(3):
        hold(nodes[1])
    with pytest.raises(QuotaExceeded):
        hold(nodes[2])
    SharedLimits(store, node="node0").reclaim()  # node0 starts again: its five come back
    for _ in range(5):
        hold(nodes[2])
    with pytest.raises(QuotaExceeded):
        hold(nodes[2])

    # node1 goes silent past the expiry (its heartbeat's age as the database sees it)
    from appliance.store.nodes import NodeBeat

    beat = NodeBeat(id="node1", url="http://n1", version="x", model="m", slots_total=8, slots_busy=0,
                    queue_depth=0, tokens_per_second=0.0, started_at="2026-12-07T00:00:00Z")  # fmt: skip
    store.beat(beat).result()
    store._write(
        lambda db: db.execute("UPDATE nodes SET heartbeat = heartbeat - ? WHERE id = 'node1'", [HOLDS_EXPIRE_S + 5])
    )
    nodes[2].reclaim_silent().result()
    for _ in range(3):
        hold(nodes[2])
    with pytest.raises(QuotaExceeded):
        hold(nodes[0])
