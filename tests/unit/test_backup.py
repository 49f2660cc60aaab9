"""Online backups: a consistent, checked, private copy of the database while writes go on."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time

import pytest

from appliance.admin.local import LocalAdmin
from appliance.core.errors import Conflict, InvalidRequest, NotFound
from appliance.core.specialists import load_specialists
from appliance.store import Store, UsageRecord, current_period, now_iso


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def record(key_id: int, account_id: int) -> UsageRecord:
    return UsageRecord(
        key_id=key_id,
        account_id=account_id,
        endpoint="/v1/infer",
        specialist="chat",
        prompt_tokens=3,
        completion_tokens=2,
        latency_ms=1,
        status=200,
        created_at=now_iso(),
        period=current_period(),
        test=False,
    )


def test_a_backup_taken_under_writes_is_consistent_and_holds_what_was_committed(store: Store, tmp_path) -> None:
    acct = store.create_account("acme", "professional")
    key = store.create_key("acme")
    key_id = store.keys("acme")[0].id
    store.set_custom_prompt(acct.id, "qa", "Cite the source.").result()
    for _ in range(200):
        store.record_usage(record(key_id, acct.id))
    stop = threading.Event()
    committed: list[int] = []

    def writer() -> None:
        # Usage keeps arriving while the copy is taken, as it does on a busy server.
        while not stop.is_set():
            store.record_usage(record(key_id, acct.id)).result()
            committed.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(committed) < 20:
            time.sleep(0.01)
        before = store.usage_count()
        info = store.backup(tmp_path / "copy.db")
        after = store.usage_count()
    finally:
        stop.set()
        thread.join()

    assert info.integrity == "ok" and info.path == str(tmp_path / "copy.db")
    assert before <= info.usage_records <= after and info.usage_records >= 200
    assert (info.accounts, info.keys) == (1, 1)
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == 0o600
    # One self-contained file: no -wal beside it, and it opens as a store with the same keys and prompts.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "data"]
    conn = sqlite3.connect(tmp_path / "copy.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (tmp_path / "copy.db").rename(restored_dir / "alveare.db")
    (restored_dir / "key-secret").write_bytes((tmp_path / "data" / "key-secret").read_bytes())
    restored = Store(restored_dir, create=False)
    try:
        principal = restored.authenticate(key.key)
        assert principal is not None and principal.account == "acme"
        assert restored.custom_prompt(acct.id, "qa") == "Cite the source."
        assert restored.usage_count() == info.usage_records
    finally:
        restored.close()


def test_a_folder_gets_a_time_stamped_file(store: Store, tmp_path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    info = store.backup(folder)
    assert info.path.startswith(str(folder / "alveare-")) and info.path.endswith(".db")
    assert [p.name for p in folder.iterdir()] == [info.path.rsplit("/", 1)[1]]


def test_a_path_ending_in_a_slash_is_a_folder_made_private_with_its_parents(store: Store, tmp_path) -> None:
    # Path() drops the trailing slash: once, `backup new/` wrote a file named "new".
    folder = tmp_path / "new" / "deeper"
    info = store.backup(f"{folder}/")
    assert folder.is_dir() and info.path.startswith(str(folder / "alveare-")) and info.path.endswith(".db")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    # An existing folder, named with or without the slash, gets a time-stamped file too.
    again = store.backup(f"{tmp_path / 'new'}/")
    assert again.path.startswith(str(tmp_path / "new" / "alveare-"))


def test_a_slash_path_through_a_file_is_refused(store: Store, tmp_path) -> None:
    (tmp_path / "plain").write_text("mine")
    with pytest.raises(InvalidRequest, match="is a file"):
        store.backup(f"{tmp_path / 'plain' / 'sub'}/")
    assert (tmp_path / "plain").read_text() == "mine"


def test_refusals_are_clear_and_leave_nothing_behind(store: Store, tmp_path) -> None:
    (tmp_path / "taken.db").write_text("mine")
    with pytest.raises(Conflict, match="never overwrites"):
        store.backup(tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "mine"
    with pytest.raises(NotFound, match=r"does not exist\. Create it first, or give a folder ending in /"):
        store.backup(tmp_path / "nowhere" / "x.db")
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(InvalidRequest, match="Give the file"):
        store.backup(" ")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root may write anyway: then there is no refusal to see
        with pytest.raises(InvalidRequest, match="Could not write the backup"):
            store.backup(locked / "x.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "locked", "taken.db"]
    assert list(locked.iterdir()) == []


def test_local_admin_backs_up_the_data_dir(store: Store, tmp_path) -> None:
    admin = LocalAdmin(store, load_specialists())
    info = admin.backup(str(tmp_path / "b.db"))
    assert info.integrity == "ok" and (tmp_path / "b.db").is_file()
