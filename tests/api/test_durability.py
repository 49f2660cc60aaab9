"""Durability on a real server: kill -9 in the middle of a load run, then a restart with every key,
account, prompt, completed request's usage and admin action's audit row intact and a database that
passes integrity_check; and an online backup taken while that load runs."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live import LiveServer, start_server

from appliance.admin.remote import AdminClient

PROMPT = "Answer in one word."
REQUESTS = 48


def call(server: LiveServer, key: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, server.base_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kw)


def infer(server: LiveServer, key: str, i: int) -> bool:
    """One request of the load, of one of three kinds; True once its whole answer has arrived."""
    kind = i % 3
    if kind == 0:
        body = {"specialist": "qa", "prompt": f"Is {i} even?", "max_tokens": 8}
        return call(server, key, "POST", "/infer", json=body).status_code == 200
    body = {"model": "chat", "messages": [{"role": "user", "content": f"Count to {i}."}], "max_tokens": 8}
    if kind == 1:
        return call(server, key, "POST", "/chat/completions", json=body).status_code == 200
    with httpx.stream(
        "POST",
        server.base_url + "/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ) as r:
        return r.status_code == 200 and any(line == "data: [DONE]" for line in r.iter_lines())


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_kill_9_mid_load_then_restart_keeps_everything_committed(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data = tmp_path_factory.mktemp("kill9")
    live = start_server(data, "--timeout", "120")
    admin_key = live.admin_key
    outcomes: dict[str, list[str]] = {"live": [], "test": []}
    lock = threading.Lock()
    try:
        key = live.new_key("durable-co", plan="professional")
        test_key = live.new_key("durable-co", plan="professional", test=True)
        assert call(live, key, "PUT", "/specialists/qa", json={"system_prompt": PROMPT}).status_code == 200

        def one(i: int) -> None:
            kind, k = ("test", test_key) if i % 4 == 3 else ("live", key)
            try:
                outcome = "ok" if infer(live, k, i) else "failed"
            except httpx.HTTPError:
                outcome = "lost"  # cut off by the kill, or refused after it
            with lock:
                outcomes[kind].append(outcome)

        def answered() -> int:
            with lock:
                return sum(o == "ok" for kind in outcomes.values() for o in kind)

        pool = ThreadPoolExecutor(8)
        for i in range(REQUESTS):
            pool.submit(one, i)
        deadline = time.monotonic() + 300
        while answered() < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        # An online backup while the load runs, through the admin API as the CLI and TUI would take it.
        answered_before_backup = answered()
        with AdminClient(live.url, admin_key, timeout=120) as admin:
            backup = admin.backup(str(tmp_path / "during-load.db"))
            # Admin changes while the load runs: each leaves its audit row, committed with it.
            admin.create_account("audited-co", "starter")
            admin.set_spending_cap("audited-co", 40.0)
            audited = admin.create_key("audited-co")
            admin.revoke_key(audited.prefix)
        while answered() < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        live.kill()
        pool.shutdown(wait=True)
    finally:
        live.stop()
    ok = {kind: outcomes[kind].count("ok") for kind in outcomes}
    lost = {kind: outcomes[kind].count("lost") for kind in outcomes}
    assert sum(ok.values()) >= 20 and sum(lost.values()) > 0, outcomes  # killed mid-run, not after it
    assert "failed" not in outcomes["live"] + outcomes["test"], outcomes

    # The file as the kill left it (opening it replays the WAL, as the next start does).
    assert integrity(data / "alveare.db") == "ok"
    assert backup.integrity == "ok" and integrity(tmp_path / "during-load.db") == "ok"
    assert backup.accounts == 2 and backup.keys == 3  # admin + durable-co; the admin key and two others

    again = start_server(data, "--timeout", "120")
    try:
        assert again.admin_key == ""  # no new admin key: the old one is there
        usage = call(again, key, "GET", "/usage").json()
        # Every completed request is counted; at most those cut off in flight are counted besides.
        assert ok["live"] <= usage["requests_used"] <= ok["live"] + lost["live"], (usage, outcomes)
        assert ok["test"] <= usage["test_requests"] <= ok["test"] + lost["test"], (usage, outcomes)
        assert answered_before_backup <= backup.usage_records <= usage["requests_used"] + usage["test_requests"]
        # Keys, accounts and prompts: the test key and the admin key work, the custom prompt is in force.
        assert call(again, test_key, "GET", "/models").status_code == 200
        listed = call(again, key, "GET", "/specialists").json()["data"]
        qa = next(s for s in listed if s["name"] == "qa")
        assert qa["custom"] is True and qa["system_prompt"] == PROMPT
        with AdminClient(again.url, admin_key, timeout=120) as admin:
            assert {o.account.name for o in admin.accounts()} == {"admin", "durable-co", "audited-co"}
            assert len(admin.keys("durable-co")) == 2
            # The audit log: the first start's rows, then the admin key's, the chain unbroken by the kill.
            by_admin = admin_key[: len(audited.prefix)]
            assert [(e.actor, e.action, e.target) for e in reversed(admin.audit().data)] == [
                ("init", "account.create", "admin"),
                ("init", "key.create", by_admin),
                (by_admin, "backup", "download"),
                (by_admin, "account.create", "audited-co"),
                (by_admin, "account.update", "audited-co"),
                (by_admin, "key.create", audited.prefix),
                (by_admin, "key.revoke", audited.prefix),
            ]
            verified = admin.verify_audit()
            assert verified.ok and verified.rows == 7
        # And it keeps counting from there.
        assert infer(again, key, 0)
        assert call(again, key, "GET", "/usage").json()["requests_used"] == usage["requests_used"] + 1
    finally:
        again.stop()
    assert integrity(data / "alveare.db") == "ok"
