"""Three appliances on one PostgreSQL (`--database`), as a cluster's nodes run: an account and key made
through one node work on the others, usage is recorded once whichever node served, a revocation
through one node holds on the others at the next request, limits and caps are exact across the
nodes, and a database that stops answering is a clear 503 until it is back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live import LiveServer, start_server

from appliance.store import Store


def chat(url: str, key: str) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


class Cluster:
    def __init__(self, nodes: list[LiveServer], url: str, data: Path) -> None:
        self.nodes, self.url, self.data = nodes, url, data
        self.admin = {"Authorization": f"Bearer {nodes[0].admin_key}"}

    def post(self, node: int, path: str, body: dict) -> dict:
        r = httpx.post(self.nodes[node].url + path, json=body, headers=self.admin)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def put(self, node: int, path: str, body: dict) -> dict:
        r = httpx.put(self.nodes[node].url + path, json=body, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()

    def patch(self, node: int, path: str, body: dict) -> dict:
        r = httpx.patch(self.nodes[node].url + path, json=body, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()

    def burst(self, key: str, n: int) -> Counter[int]:
        """`n` requests at once, spread over the nodes in turn; the statuses they got."""

        async def all_at_once() -> list[int]:
            body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(timeout=120) as client:
                urls = [self.nodes[i % len(self.nodes)].url + "/v1/chat/completions" for i in range(n)]
                answers = await asyncio.gather(*(client.post(u, json=body, headers=headers) for u in urls))
            return [a.status_code for a in answers]

        return Counter(asyncio.run(all_at_once()))

    def usage_count(self, account: str, settles_at: int | None = None) -> int:
        """The account's usage records in the database (the state is there, not in the nodes); with
        `settles_at`, once that many are there or 10 s have passed. A node answers once its record is
        committed or after RECORD_WAIT_S, whichever comes first: on a busy machine the last commit
        may land just after the last answer."""
        store = Store(self.data / "reader", database=self.url)
        try:
            deadline = time.monotonic() + 10
            while (n := store.usage_count(account)) < (settles_at or 0) and time.monotonic() < deadline:
                time.sleep(0.2)
            return n
        finally:
            store.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres) -> Iterator[Cluster]:
    url = postgres.new_database()
    data = tmp_path_factory.mktemp("cluster")
    nodes = []
    try:
        for name in ("one", "two", "three"):
            nodes.append(start_server(data / name, "--database", url))
        yield Cluster(nodes, url, data)
    finally:
        for node in nodes:
            node.stop()


def test_nodes_share_accounts_keys_usage_and_revocations(cluster: Cluster) -> None:
    one, two = cluster.nodes[0], cluster.nodes[1]
    assert one.admin_key and not two.admin_key  # the first node made the cluster's first admin key
    cluster.post(0, "/v1/admin/accounts", {"name": "acme", "plan": "starter"})
    key = cluster.post(1, "/v1/admin/keys", {"account": "acme"})["key"]  # through another node
    assert chat(one.url, key).status_code == 200
    assert chat(two.url, key).status_code == 200
    usage = httpx.get(one.url + "/v1/admin/usage", params={"account": "acme"}, headers=cluster.admin).json()
    assert usage["by_account"][0]["requests"] == 2  # each request once, whichever node served it

    revoked = httpx.delete(one.url + f"/v1/admin/keys/{key[:17]}", headers=cluster.admin)
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()
    refused = chat(two.url, key)
    assert refused.status_code == 401 and time.monotonic() - started < 1.0
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert cluster.usage_count("acme", settles_at=2) == 2


def test_a_per_minute_limit_is_exact_across_nodes(cluster: Cluster) -> None:
    cluster.post(0, "/v1/admin/accounts", {"name": "solo-app", "plan": "solo"})  # 20 requests a minute
    cluster.patch(0, "/v1/admin/accounts/solo-app", {"specialists": ["chat"]})
    key = cluster.post(0, "/v1/admin/keys", {"account": "solo-app"})["key"]
    statuses = cluster.burst(key, 30)
    assert statuses == Counter({200: 20, 429: 10})  # counted per node, 3 nodes would admit all 30
    assert cluster.usage_count("solo-app", settles_at=30) == 30  # every answer recorded once, refusals included


def test_a_spending_cap_is_never_passed_across_nodes(cluster: Cluster) -> None:
    # 5 requests a month, then 1.0 per request, capped at 3.0: 8 requests at most, however they race.
    cluster.put(0, "/v1/admin/plans/capped", {"requests_per_month": 5, "requests_per_minute": 1000,
                                              "overage_per_1k_requests": 1000.0})  # fmt: skip
    cluster.post(0, "/v1/admin/accounts", {"name": "capped-app", "plan": "capped"})
    cluster.patch(1, "/v1/admin/accounts/capped-app", {"spending_cap": 3.0})
    key = cluster.post(2, "/v1/admin/keys", {"account": "capped-app"})["key"]
    statuses = cluster.burst(key, 20)
    assert statuses == Counter({200: 8, 429: 12})
    usage = httpx.get(
        cluster.nodes[1].url + "/v1/admin/usage", params={"account": "capped-app"}, headers=cluster.admin
    ).json()
    assert usage["by_account"][0]["requests"] == 8


def test_a_database_that_stops_answering_is_a_clear_503_until_it_is_back(cluster: Cluster, postgres) -> None:
    cluster.post(0, "/v1/admin/accounts", {"name": "steady", "plan": "starter"})
    key = cluster.post(0, "/v1/admin/keys", {"account": "steady"})["key"]
    node = cluster.nodes[2]
    postgres.stop()
    try:
        started = time.monotonic()
        down = chat(node.url, key)
        assert down.status_code == 503 and time.monotonic() - started < 8
        assert down.json()["error"]["code"] == "store_unavailable" and "retry-after" in down.headers
    finally:
        postgres.start()
    assert chat(node.url, key).status_code == 200


def test_every_node_lists_the_cluster_and_a_killed_node_shows_down(cluster: Cluster) -> None:
    import os
    import subprocess
    import sys

    time.sleep(2.5)  # a heartbeat from each
    listed = httpx.get(cluster.nodes[1].url + "/v1/hive/status", params={"all": "1"}, headers=cluster.admin).json()
    assert "nodes" in listed, listed
    nodes = {n["url"]: n for n in listed["nodes"]}
    assert set(nodes) == {node.url for node in cluster.nodes}
    assert all(n["state"] == "up" and n["slots_total"] >= 1 for n in nodes.values())
    assert [n["this_node"] for n in listed["nodes"]].count(True) == 1 and nodes[cluster.nodes[1].url]["this_node"]
    plain = httpx.get(cluster.nodes[1].url + "/v1/hive/status", headers=cluster.admin).json()
    assert plain["nodes"] is None  # only when asked: it reads the store

    env = {**os.environ, "ALVEARE_API_KEY": cluster.nodes[0].admin_key}
    shown = subprocess.run(
        [sys.executable, "-m", "appliance", "hives", "status", "--base-url", cluster.nodes[2].url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert all(node.url in shown.stdout for node in cluster.nodes) and "STATE" in shown.stdout

    victim = cluster.nodes.pop()  # kill -9: no last heartbeat
    victim.kill()
    time.sleep(11)
    listed = httpx.get(cluster.nodes[0].url + "/v1/hive/status?all=1", headers=cluster.admin).json()
    states = {n["url"]: n["state"] for n in listed["nodes"]}
    assert states[victim.url] == "down" and all(states[n.url] == "up" for n in cluster.nodes)
