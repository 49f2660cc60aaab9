"""The audit log through the admin API in-process (fake engine): a row for every admin write route,
naming the request's admin key; the list paginated and the chain verified over HTTP, by AdminClient
and by `alveare admin audit` talking to that API."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.admin import reach
from appliance.admin.remote import AdminClient
from appliance.api import create_app
from appliance.cli import main
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine


@pytest.fixture
def api(tmp_path: Path):
    store = Store(tmp_path / "data")
    created = store.ensure_admin()
    assert created is not None
    app = create_app(
        Settings(data_dir=str(tmp_path / "data")), engine=FakeEngine(), store=store, specialists=load_specialists()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {created.key}"
        yield client, created.prefix
    store.close()


def newest(client: TestClient, n: int = 1) -> list[dict]:
    r = client.get(f"/v1/admin/audit?limit={n}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


# Each admin write route, and the row it leaves: (action, target).
WRITES = [
    ("POST", "/v1/admin/accounts", {"name": "acme", "plan": "professional"}, ("account.create", "acme")),
    ("PATCH", "/v1/admin/accounts/acme", {"spending_cap": 9}, ("account.update", "acme")),
    ("PATCH", "/v1/admin/accounts/acme", {"plan": "scale"}, ("account.update", "acme")),
    ("PATCH", "/v1/admin/accounts/acme", {"specialists": ["qa"]}, ("account.update", "acme")),
    ("PUT", "/v1/admin/plans/solo", {"requests_per_minute": 7}, ("plan.update", "solo")),
    ("PUT", "/v1/admin/plans/gold", {"monthly_price": 9.5}, ("plan.create", "gold")),
    ("PUT", "/v1/admin/accounts/acme/prompts/qa", {"system_prompt": "Cite."}, ("prompt.set", "acme/qa")),
    ("DELETE", "/v1/admin/accounts/acme/prompts/qa", None, ("prompt.reset", "acme/qa")),
    ("PUT", "/v1/admin/specialists/chat", {"temperature": 0.3}, ("specialist.set", "chat")),
    ("DELETE", "/v1/admin/specialists/chat", None, ("specialist.reset", "chat")),
    ("POST", "/v1/admin/keys", {"account": "acme"}, ("key.create", None)),
    ("GET", "/v1/admin/backup", None, ("backup", "download")),
]


def test_every_admin_write_through_the_api_leaves_a_row_naming_the_admin_key(api) -> None:
    client, prefix = api
    assert [(e["actor"], e["action"]) for e in newest(client, 10)[::-1]] == [
        ("init", "account.create"),
        ("init", "key.create"),
    ]
    for method, path, body, (action, target) in WRITES:
        r = client.request(method, path, json=body)
        assert r.status_code in (200, 201), (path, r.text)
        row = newest(client)[0]
        assert (row["actor"], row["action"]) == (prefix, action), (path, row)
        expected = target if target is not None else r.json()["prefix"]
        assert row["target"] == expected, (path, row)
        assert row["at"].endswith("Z") and len(row["hash"]) == 64
    key = client.post("/v1/admin/keys", json={"account": "acme"}).json()
    r = client.delete(f"/v1/admin/keys/{key['prefix']}")
    assert r.status_code == 200
    row = newest(client)[0]
    assert (row["actor"], row["action"], row["target"], row["change"]) == (
        prefix,
        "key.revoke",
        key["prefix"],
        {"account": "acme"},
    )
    # A refused write leaves nothing; reads leave nothing.
    count = client.get("/v1/admin/audit/verify").json()["rows"]
    assert client.post("/v1/admin/accounts", json={"name": "acme"}).status_code == 409
    assert client.get("/v1/admin/accounts").status_code == 200
    verified = client.get("/v1/admin/audit/verify").json()
    assert verified == {"ok": True, "rows": count, "head": newest(client)[0]["hash"], "bad_row": None, "problem": ""}


def test_the_list_is_paginated_and_its_parameters_checked(api) -> None:
    client, _ = api
    for cap in range(6):
        client.post("/v1/admin/accounts", json={"name": f"a{cap}"})
    page = client.get("/v1/admin/audit?limit=3").json()
    assert [e["id"] for e in page["data"]] == [8, 7, 6] and page["has_more"] and page["next_before"] == 6
    page = client.get(f"/v1/admin/audit?limit=3&before={page['next_before']}").json()
    assert [e["id"] for e in page["data"]] == [5, 4, 3]
    page = client.get("/v1/admin/audit?before=3").json()
    assert [e["id"] for e in page["data"]] == [2, 1] and not page["has_more"] and page["next_before"] is None
    assert len(client.get("/v1/admin/audit").json()["data"]) == 8  # the default page is 50
    for query, param in (("limit=x", "limit"), ("limit=0", "limit"), ("limit=501", "limit"), ("before=-1", "before")):
        r = client.get(f"/v1/admin/audit?{query}")
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (query, r.text)


def test_verify_over_http_names_a_tampered_row(api, tmp_path: Path) -> None:
    client, _ = api
    client.post("/v1/admin/accounts", json={"name": "acme"})
    client.post("/v1/admin/accounts", json={"name": "globex"})
    conn = sqlite3.connect(tmp_path / "data" / "alveare.db")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("DELETE FROM audit_log WHERE id = 3")
    conn.commit()
    conn.close()
    r = client.get("/v1/admin/audit/verify").json()
    assert (r["ok"], r["rows"], r["bad_row"]) == (False, 2, 4) and "does not follow" in r["problem"]


@pytest.fixture
def admin_client(api):
    client, _ = api
    return AdminClient("http://testserver.local/v1", client.headers["Authorization"][7:], transport=client._transport)


def test_admin_client_lists_and_verifies(admin_client: AdminClient, api) -> None:
    _, prefix = api
    admin_client.create_account("acme")
    page = admin_client.audit(1)
    assert [(e.actor, e.action, e.target) for e in page.data] == [(prefix, "account.create", "acme")]
    assert page.has_more and page.next_before == 3
    assert [e.id for e in admin_client.audit(5, before=3).data] == [2, 1]
    result = admin_client.verify_audit()
    assert result.ok and result.rows == 3 and result.head == page.data[0].hash


def test_the_cli_lists_and_verifies_through_the_admin_api(
    admin_client: AdminClient, api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, prefix = api
    monkeypatch.setattr(reach, "open_admin", lambda *args, **kwargs: admin_client)
    monkeypatch.setattr(admin_client, "close", lambda: None)  # the transport is the TestClient's
    admin_client.create_key("admin", admin=True)
    assert main(["--data-dir", str(tmp_path / "data"), "admin", "audit", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "WHEN", "(UTC)", "WHO", "ACTION", "TARGET", "CHANGE"]
    assert out[1].split()[:5] == ["3", out[1].split()[1], out[1].split()[2], prefix, "key.create"]
    assert '{"account":"admin","admin":true,"test":false}' in out[1]
    assert main(["--data-dir", str(tmp_path / "data"), "admin", "audit", "list", "--limit", "1", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in page["data"]] == [3] and page["next_before"] == 3
    assert main(["--data-dir", str(tmp_path / "data"), "admin", "audit", "verify"]) == 0
    head = admin_client.audit(1).data[0].hash
    assert capsys.readouterr().out == f"The audit log's chain holds: 3 rows, the newest hashing to {head}.\n"
