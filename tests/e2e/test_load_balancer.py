"""The shipped HAProxy configuration (packaging/haproxy/alveare.cfg) in front of three appliances on one
PostgreSQL: a key and model keep to one node while it is up (its prompt prefixes stay warm), a node
killed with -9 mid-load loses no request sent after it (the balancer moves them to the others), and
the usage recorded equals the answers the client saw. The same for the nginx configuration
(packaging/nginx/alveare.conf, affinity by key) in front of two."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from live import LiveServer, start_server
from nginx_site import nginx_binary, nginx_config

from appliance.store import Store

CONFIG = Path(__file__).parents[2] / "packaging" / "haproxy" / "alveare.cfg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served(node: LiveServer, admin: dict) -> int:
    return httpx.get(node.url + "/v1/hive/status", headers=admin, timeout=10).json()["requests_served"]


def answers_after_a_kill(lb: str, home: LiveServer, body: dict, auth: dict, n: int) -> int:
    """`home` killed with -9 (its connections refused from then on), then `n` requests through the
    balancer: each must be answered, by another node (the dead one never started it)."""
    home.kill()
    for _ in range(n):
        r = httpx.post(lb + "/v1/chat/completions", json=body, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
    return n


def recorded(tmp_path: Path, url: str, account: str) -> int:
    """The account's usage records in the cluster's database, once every node's writes are in."""
    store = Store(tmp_path / "reader", database=url)
    try:
        store.flush().result()
        return store.usage_count(account)
    finally:
        store.close()


def stop_all(balancer: subprocess.Popen, nodes: list[LiveServer], log, log_path: Path) -> None:
    balancer.terminate()
    balancer.wait(timeout=10)
    for n in nodes:
        n.stop()
    log.close()
    if balancer.returncode not in (0, -15, 143):
        pytest.fail(log_path.read_text())


def test_haproxy_keeps_a_key_on_one_node_and_moves_it_when_the_node_dies(tmp_path: Path, postgres) -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "HAProxy is not installed; ./packaging/run.sh test installs it (the haproxy package)"
    url = postgres.new_database()
    nodes = [start_server(tmp_path / n, "--database", url, "--trusted-proxies", "127.0.0.1") for n in "abc"]
    port = free_port()
    env = {**os.environ, "ALVEARE_LB_BIND": f"127.0.0.1:{port}"}
    env.update({f"ALVEARE_NODE{i + 1}": f"127.0.0.1:{n.port}" for i, n in enumerate(nodes)})
    log = (tmp_path / "haproxy.log").open("w")
    balancer = subprocess.Popen([haproxy, "-db", "-f", str(CONFIG)], env=env, stdout=log, stderr=subprocess.STDOUT)
    lb = f"http://127.0.0.1:{port}"
    try:
        admin = {"Authorization": f"Bearer {nodes[0].admin_key}"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every node passed its health checks (rise 2 x 2 s)
            time.sleep(1)
            try:
                if httpx.get(lb + "/health", timeout=5).json()["status"] == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                continue
        time.sleep(4)
        httpx.post(nodes[0].url + "/v1/admin/accounts", json={"name": "acme", "plan": "scale"}, headers=admin)
        key = httpx.post(nodes[0].url + "/v1/admin/keys", json={"account": "acme"}, headers=admin).json()["key"]
        body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        auth = {"Authorization": f"Bearer {key}"}

        before = [served(n, admin) for n in nodes]
        ok = 0
        for _ in range(12):
            r = httpx.post(lb + "/v1/chat/completions", json=body, headers=auth, timeout=60)
            assert r.status_code == 200, r.text
            ok += 1
        gained = [served(n, admin) - b for n, b in zip(nodes, before, strict=True)]
        assert sorted(gained) == [0, 0, 12], gained  # one node served every request of this key and model
        home = nodes[gained.index(12)]

        ok += answers_after_a_kill(lb, home, body, auth, 10)
        assert recorded(tmp_path, url, "acme") == ok  # each answer the client saw, recorded once
    finally:
        stop_all(balancer, nodes, log, tmp_path / "haproxy.log")


def test_nginx_keeps_a_key_on_one_node_and_moves_it_when_the_node_dies(tmp_path: Path, postgres) -> None:
    url = postgres.new_database()
    nodes = [start_server(tmp_path / n, "--database", url, "--trusted-proxies", "127.0.0.1") for n in "ab"]
    port = free_port()
    main = nginx_config(tmp_path / "nginx", [f"127.0.0.1:{n.port}" for n in nodes], f"127.0.0.1:{port}")
    log = (tmp_path / "nginx.log").open("w")
    balancer = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path / "nginx"), "-c", str(main)], stdout=log, stderr=subprocess.STDOUT
    )
    lb = f"http://127.0.0.1:{port}"
    try:
        admin = {"Authorization": f"Bearer {nodes[0].admin_key}"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(lb + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        httpx.post(nodes[0].url + "/v1/admin/accounts", json={"name": "acme", "plan": "scale"}, headers=admin)
        key = httpx.post(nodes[0].url + "/v1/admin/keys", json={"account": "acme"}, headers=admin).json()["key"]
        auth = {"Authorization": f"Bearer {key}"}
        before = [served(n, admin) for n in nodes]
        ok = 0
        for i, model in enumerate(["chat", "qa", "chat", "summarise"] * 2):  # a key's specialists share its node
            body = {"model": model, "messages": [{"role": "user", "content": f"Hi {i}"}], "max_tokens": 2}
            r = httpx.post(lb + "/v1/chat/completions", json=body, headers=auth, timeout=60)
            assert r.status_code == 200, r.text
            ok += 1
        gained = [served(n, admin) - b for n, b in zip(nodes, before, strict=True)]
        assert sorted(gained) == [0, 8], gained
        home = nodes[gained.index(8)]

        body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        ok += answers_after_a_kill(lb, home, body, auth, 6)
        assert recorded(tmp_path, url, "acme") == ok  # each answer the client saw, recorded once
    finally:
        stop_all(balancer, nodes, log, tmp_path / "nginx.log")
