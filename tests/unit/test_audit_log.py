"""The audit log in the store: a row per admin write, in the write's own transaction, never a secret;
the hash chain holds on real actions and names the first row that was edited, removed or reordered."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import psycopg
import pytest

from appliance.admin.local import LocalAdmin
from appliance.core.errors import Conflict, InvalidRequest
from appliance.core.specialists import load_specialists
from appliance.store import LOCAL_ACTOR, Store
from appliance.store.audit import GENESIS, chain_hash


@pytest.fixture
def admin(tmp_path: Path, store_database):
    """The admin tools on the store, on each back end (conftest.store_database)."""
    local = LocalAdmin(Store(tmp_path / "data", database=store_database), load_specialists(None))
    yield local
    local.close()


def on_sqlite(admin: LocalAdmin) -> bool:
    return admin.store.dialect == "sqlite"


def raw(admin: LocalAdmin):
    """A connection of one's own to the store's database, behind the store's back."""
    if on_sqlite(admin):
        return sqlite3.connect(admin.store.path)
    return psycopg.connect(admin.store._backend.url, autocommit=True)


def actions(admin: LocalAdmin) -> list[tuple[str, str, str, dict]]:
    """(actor, action, target, change) of every row, oldest first."""
    return [(e.actor, e.action, e.target, e.change) for e in reversed(admin.audit(500).data)]


def tamper(admin: LocalAdmin, *sql: str) -> None:
    """Change the database behind the store's back, as someone with the data dir (or the database's
    owner) could: the append-only triggers have to go first."""
    conn = raw(admin)
    if on_sqlite(admin):
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
    else:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()


def do_everything(admin: LocalAdmin, tmp_path: Path) -> str:
    """Every admin write LocalAdmin has; returns the key made (to look for it in the log)."""
    admin.create_account("acme", "professional")
    created = admin.create_key("acme")
    admin.create_key("acme", test=True)
    admin.create_key("admin", admin=True)
    admin.revoke_key(created.prefix)
    admin.set_plan("solo", requests_per_minute=5, custom_prompts=True)
    admin.set_plan("gold", requests_per_month=7)
    admin.set_account_plan("acme", "scale")
    admin.set_spending_cap("acme", 12.5)
    admin.set_account_specialists("acme", ["qa", "chat"])
    admin.set_custom_prompt("acme", "qa", "Answer in one line.")
    admin.reset_custom_prompt("acme", "qa")
    admin.set_specialist("chat", temperature=0.2, system_prompt="Be kind.")
    admin.reset_specialist("chat")
    if on_sqlite(admin):  # PostgreSQL is backed up with its own tools
        admin.backup(str(tmp_path / "copy.db"))
    else:
        admin.store.record_audit(LOCAL_ACTOR, "backup", str(tmp_path / "copy.db"), {"accounts": 2, "keys": 3})
    return created.key


def test_every_admin_write_leaves_one_row_naming_who_and_what(admin: LocalAdmin, tmp_path: Path) -> None:
    key = do_everything(admin, tmp_path)
    rows = actions(admin)
    prefixes = [k.prefix for k in admin.keys(None)]
    assert [(a, t) for _, a, t, _ in rows] == [
        ("account.create", "acme"),
        ("key.create", prefixes[0]),
        ("key.create", prefixes[1]),
        ("account.create", "admin"),  # the first admin key makes the admin account
        ("key.create", prefixes[2]),
        ("key.revoke", prefixes[0]),
        ("plan.update", "solo"),
        ("plan.create", "gold"),
        ("account.update", "acme"),
        ("account.update", "acme"),
        ("account.update", "acme"),
        ("prompt.set", "acme/qa"),
        ("prompt.reset", "acme/qa"),
        ("specialist.set", "chat"),
        ("specialist.reset", "chat"),
        ("backup", str(tmp_path / "copy.db")),
    ]
    assert {actor for actor, *_ in rows} == {LOCAL_ACTOR}
    change = {(a, t): c for _, a, t, c in rows}
    assert change[("key.create", prefixes[1])] == {"account": "acme", "test": True, "admin": False}
    assert change[("key.create", prefixes[2])] == {"account": "admin", "test": False, "admin": True}
    assert change[("key.revoke", prefixes[0])] == {"account": "acme"}
    assert change[("plan.update", "solo")] == {"requests_per_minute": [20, 5], "custom_prompts": [False, True]}
    assert change[("plan.create", "gold")]["requests_per_month"] == 7
    assert change[("plan.create", "gold")]["base"] == "starter"
    updates = [c for _, a, _, c in rows if a == "account.update"]
    assert updates == [
        {"plan": ["professional", "scale"]},
        {"spending_cap": [None, 12.5]},
        {"specialists": [None, ["qa", "chat"]]},
    ]
    prompt = change[("prompt.set", "acme/qa")]["system_prompt"]
    assert prompt[0] is None and prompt[1]["chars"] == len("Answer in one line.") and len(prompt[1]["sha256"]) == 16
    assert change[("prompt.reset", "acme/qa")]["system_prompt"] == [prompt[1], None]
    assert change[("specialist.set", "chat")]["temperature"] == [None, 0.2]
    assert change[("specialist.reset", "chat")]["temperature"] == [0.2, None]
    assert rows[-1][3]["accounts"] == 2 and rows[-1][3]["keys"] == 3
    assert not on_sqlite(admin) or rows[-1][3]["bytes"] > 0
    # Never a secret: no key, no key hash, no prompt text, anywhere in the table.
    text = " ".join(str(c) for row in admin.store._rows("SELECT * FROM audit_log") for c in row)
    hashes = [h for (h,) in admin.store._rows("SELECT hash FROM api_keys")]
    assert key not in text and key[len(prefixes[0]) :] not in text
    assert not any(h in text for h in hashes)
    assert "Answer in one line." not in text and "Be kind." not in text


def test_the_chain_holds_on_real_actions(admin: LocalAdmin, tmp_path: Path) -> None:
    assert admin.verify_audit().ok and admin.verify_audit().rows == 0 and admin.verify_audit().head == GENESIS
    do_everything(admin, tmp_path)
    result = admin.verify_audit()
    newest = admin.audit(1).data[0]
    assert result.ok and result.rows == newest.id == 16 and result.head == newest.hash
    assert result.bad_row is None and result.problem == ""
    # Each row follows the one before it, and its hash is over that hash and its own fields.
    rows = admin.audit(500).data[::-1]
    assert rows[0].prev_hash == GENESIS and all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


def test_an_edited_row_is_named(admin: LocalAdmin, tmp_path: Path) -> None:
    do_everything(admin, tmp_path)
    tamper(admin, """UPDATE audit_log SET change = '{"requests_per_minute":[20,500]}' WHERE id = 7""")
    result = admin.verify_audit()
    assert not result.ok and result.bad_row == 7 and result.rows == 6
    assert result.problem == "its contents do not match its hash (it was changed after it was written)"
    assert result.head == admin.audit(1, before=7).data[0].hash


def test_an_edit_with_its_hash_made_again_is_named_at_the_next_row(admin: LocalAdmin, tmp_path: Path) -> None:
    do_everything(admin, tmp_path)
    row = admin.audit(1, before=8).data[0]
    forged = chain_hash(row.prev_hash, row.id, row.at, "someone-else", row.action, row.target, '{"x":1}')
    tamper(
        admin, f"""UPDATE audit_log SET actor = 'someone-else', change = '{{"x":1}}', hash = '{forged}' WHERE id = 7"""
    )
    result = admin.verify_audit()
    assert not result.ok and result.bad_row == 8 and "does not follow the row before it" in result.problem


def test_a_deleted_row_is_named(admin: LocalAdmin, tmp_path: Path) -> None:
    do_everything(admin, tmp_path)
    tamper(admin, "DELETE FROM audit_log WHERE id = 5")
    result = admin.verify_audit()
    assert not result.ok and result.bad_row == 6 and result.rows == 4
    assert "does not follow the row before it" in result.problem


def test_removing_the_first_rows_is_named(admin: LocalAdmin, tmp_path: Path) -> None:
    do_everything(admin, tmp_path)
    tamper(admin, "DELETE FROM audit_log WHERE id <= 2")
    result = admin.verify_audit()
    assert (
        not result.ok and result.bad_row == 3 and result.rows == 0 and "rows before it were removed" in result.problem
    )


def test_reordered_rows_are_named(admin: LocalAdmin, tmp_path: Path) -> None:
    do_everything(admin, tmp_path)
    swap = "UPDATE audit_log SET id = {} WHERE id = {}"
    tamper(admin, swap.format(1000, 3), swap.format(3, 4), swap.format(4, 1000))
    result = admin.verify_audit()
    assert not result.ok and result.bad_row == 3


def test_the_table_refuses_updates_and_deletes(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    conn = raw(admin)
    refused = sqlite3.IntegrityError if on_sqlite(admin) else psycopg.errors.RaiseException
    try:
        for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(refused, match="the audit log is append-only"):
                conn.execute(sql)
    finally:
        conn.close()
    assert admin.verify_audit().ok and admin.verify_audit().rows == 1


def test_a_refused_action_leaves_no_row(admin: LocalAdmin) -> None:
    # The row is written in the action's own job: when the action fails there, neither is committed.
    admin.create_account("acme")
    for _ in range(5):
        admin.create_key("acme")
    with pytest.raises(Conflict):
        admin.create_key("acme")  # the sixth active key, refused inside the write
    with pytest.raises(Conflict):
        admin.create_account("acme")  # refused inside the write too
    assert [a for _, a, _, _ in actions(admin)] == ["account.create"] + ["key.create"] * 5
    assert admin.verify_audit().ok


def test_writes_that_are_no_admin_action_leave_no_row(admin: LocalAdmin) -> None:
    """A tenant's own system prompt (the user API) and the store used without an actor (the tests'
    helpers) are not admin actions."""
    store = admin.store
    store.create_account("acme", "professional")
    account = store.account("acme")
    store.set_custom_prompt(account.id, "qa", "Mine.").result()
    assert admin.audit().data == []


def test_the_first_start_is_the_init_actor(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        created = store.ensure_admin()
        assert created is not None
        rows = [(e.actor, e.action, e.target) for e in store.audit_log().data]
        assert rows == [("init", "key.create", created.prefix), ("init", "account.create", "admin")]
    finally:
        store.close()


def test_pages_newest_first(admin: LocalAdmin) -> None:
    admin.create_account("acme", "scale")
    for cap in range(11):
        admin.set_spending_cap("acme", float(cap))
    first = admin.audit(5)
    assert [e.id for e in first.data] == [12, 11, 10, 9, 8] and first.has_more and first.next_before == 8
    second = admin.audit(5, before=first.next_before)
    assert [e.id for e in second.data] == [7, 6, 5, 4, 3] and second.next_before == 3
    last = admin.audit(5, before=second.next_before)
    assert [e.id for e in last.data] == [2, 1] and not last.has_more and last.next_before is None
    for bad in (0, 501, True, "5"):
        with pytest.raises(InvalidRequest, match="limit must be") as info:
            admin.audit(bad)  # type: ignore[arg-type]
        assert info.value.param == "limit"
    with pytest.raises(InvalidRequest, match="before must be") as info:
        admin.audit(5, before=0)
    assert info.value.param == "before"
