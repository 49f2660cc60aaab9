"""`alveare admin migrate-db`: a single box's store, busy with history, copied into PostgreSQL with
nothing lost: every row, the keys (the box's secret goes along), the audit chain, and new rows
carry on after the copied ids. A database that holds a store already is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from live import cli

from appliance.core.errors import Conflict
from appliance.store import Store, UsageRecord, current_period, now_iso
from appliance.store.migrate import TABLES, migrate

USAGE_ROWS = 2500  # more than one insert batch


def busy_box(data_dir: Path) -> tuple[list[str], dict[str, int]]:
    """A store with some of everything; returns its live keys and its row counts."""
    store = Store(data_dir)
    try:
        store.ensure_admin()
        keys = []
        for name, plan in (("acme", "professional"), ("beta", "solo")):
            acct = store.create_account(name, plan, actor="tester")
            keys.append(store.create_key(name, actor="tester").key)
            store.set_custom_prompt(acct.id, "qa", f"{name}: answer briefly.").result()
            store.record_alert(acct.id, current_period(), 75, 7500, 10_000).result()
        store.set_spending_cap("acme", 12.5, actor="tester")
        store.set_plan("gold", requests_per_month=7, actor="tester")
        store.set_specialist_override("chat", temperature=0.25, actor="tester")
        principal = store.authenticate(keys[0])
        assert principal is not None
        for i in range(USAGE_ROWS):
            store.record_usage(
                UsageRecord(
                    key_id=principal.key_id,
                    account_id=principal.account_id,
                    endpoint="chat.completions",
                    specialist="chat",
                    prompt_tokens=i,
                    completion_tokens=3,
                    latency_ms=5,
                    status=200,
                    created_at=now_iso(),
                    period=current_period(),
                    test=False,
                )
            )
        store.flush().result()
        counts = {t: store._rows(f"SELECT count(*) FROM {t}")[0][0] for t, _ in TABLES}
        return keys, counts
    finally:
        store.close()


def test_a_busy_box_is_copied_whole_and_verified(tmp_path: Path, postgres) -> None:
    keys, counts = busy_box(tmp_path / "box")
    url = postgres.new_database()
    done = migrate(tmp_path / "box", url)
    assert {t.table: t.rows for t in done.tables} == counts
    assert counts["usage"] == USAGE_ROWS and counts["audit_log"] > 5
    node = Store(tmp_path / "node", database=url)
    try:
        for key in keys:  # the box's keys work: its secret came along
            assert node.authenticate(key) is not None
        assert node.usage_summary("acme").tokens_used == sum(range(USAGE_ROWS)) + 3 * USAGE_ROWS
        assert node.account("acme").spending_cap == 12.5 and node.plan("gold").requests_per_month == 7
        check = node.verify_audit()
        assert check.ok and check.rows == counts["audit_log"] + 1  # and a row for the migration itself
        assert node.audit_log(limit=1).data[0].action == "store.migrate"
        made = node.create_account("gamma")  # ids go on after the copied ones
        assert made.id > max(a.id for a in node.accounts() if a.name != "gamma")
    finally:
        node.close()
    with pytest.raises(Conflict, match="holds a store already"):
        migrate(tmp_path / "box", url)


def test_the_cli_copies_and_says_where_to_point_the_nodes(tmp_path: Path, postgres) -> None:
    busy_box(tmp_path / "box")
    url = postgres.new_database()
    out = cli(tmp_path / "box", "admin", "migrate-db", "--to", url, "--json")
    tables = {t["table"]: t["rows"] for t in json.loads(out.stdout)["tables"]}
    assert tables["usage"] == USAGE_ROWS
    again = cli(tmp_path / "box", "admin", "migrate-db", "--to", url, check=False)
    assert again.returncode != 0 and "holds a store already" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    wrong = cli(tmp_path / "box", "admin", "migrate-db", "--to", "mysql://u:pw@db/x", check=False)
    assert wrong.returncode != 0 and "postgresql://" in wrong.stderr and "pw" not in wrong.stderr
