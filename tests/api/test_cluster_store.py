"""Two appliances on one PostgreSQL (`--database`), as a cluster's nodes run: an account and key made
through one node work on the other, usage is recorded once whichever node served, a revocation
through one node holds on the other at the next request, the admin API works on either, and a
database that stops answering is a clear 503 until it is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from live import start_server

from appliance.store import Store


def chat(url: str, key: str) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_two_nodes_share_one_postgresql_store(tmp_path: Path, postgres) -> None:
    url = postgres.new_database()
    one = start_server(tmp_path / "one", "--database", url)
    two = start_server(tmp_path / "two", "--database", url)
    try:
        admin = {"Authorization": f"Bearer {one.admin_key}"}
        assert one.admin_key and not two.admin_key  # the first node made the cluster's first admin key
        made = httpx.post(one.url + "/v1/admin/accounts", json={"name": "acme", "plan": "starter"}, headers=admin)
        assert made.status_code == 201, made.text
        created = httpx.post(two.url + "/v1/admin/keys", json={"account": "acme"}, headers=admin)  # via node two
        assert created.status_code == 201, created.text
        key = created.json()["key"]

        assert chat(one.url, key).status_code == 200
        assert chat(two.url, key).status_code == 200
        usage = httpx.get(one.url + "/v1/admin/usage", params={"account": "acme"}, headers=admin).json()
        assert usage["by_account"][0]["requests"] == 2  # each request once, whichever node served it

        revoked = httpx.delete(one.url + f"/v1/admin/keys/{key[:17]}", headers=admin)
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        refused = chat(two.url, key)
        assert refused.status_code == 401 and time.monotonic() - started < 1.0
        assert refused.json()["error"]["code"] == "invalid_api_key"

        # The database goes away: a clear 503 within seconds, not a 500 or a hang; back when it is.
        spare = httpx.post(one.url + "/v1/admin/keys", json={"account": "acme"}, headers=admin).json()["key"]
        postgres.stop()
        try:
            started = time.monotonic()
            down = chat(two.url, spare)
            assert down.status_code == 503 and time.monotonic() - started < 8
            assert down.json()["error"]["code"] == "store_unavailable" and "retry-after" in down.headers
        finally:
            postgres.start()
        assert chat(two.url, spare).status_code == 200
    finally:
        one.stop()
        two.stop()
    store = Store(tmp_path / "three", database=url)  # and the state is in the database, not the nodes
    try:
        assert store.usage_count("acme") == 3  # each answer once
    finally:
        store.close()
