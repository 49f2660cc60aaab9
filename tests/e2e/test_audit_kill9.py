"""The audit log survives kill -9 as usage does: a process making admin changes from several threads at
once (so the store's writer commits them in batches) is killed mid-run; every change it saw return has
its row, the chain holds, and the database passes integrity_check. The same with a real server under
load is tests/api/test_durability.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from appliance.admin.local import LocalAdmin
from appliance.core.specialists import load_specialists
from appliance.store import Store

THREADS = 4
# Changes acknowledged (per thread, at least) before the kill.
BEFORE_KILL = 40

CHILD = """
import sys, threading
from pathlib import Path
from appliance.admin.local import LocalAdmin
from appliance.core.specialists import load_specialists
from appliance.store import Store

admin = LocalAdmin(Store(Path(sys.argv[1]), create=False), load_specialists(None))
lock = threading.Lock()

def changes(t: int) -> None:
    i = 0
    while True:
        admin.set_spending_cap(f"acct-{t}", float(i))
        with lock:  # acknowledged: the change and its row were committed when the call returned
            print(t, i, flush=True)
        i += 1

for t in range(int(sys.argv[2])):
    threading.Thread(target=changes, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def test_every_acknowledged_admin_change_keeps_its_row_through_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    setup = LocalAdmin(Store(data), load_specialists(None))
    for t in range(THREADS):
        setup.create_account(f"acct-{t}", "scale")
    setup.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(THREADS)], stdout=subprocess.PIPE, text=True, env=env
    )
    acked: dict[int, int] = {}
    assert child.stdout is not None
    deadline = time.monotonic() + 120
    try:
        while min(acked.values(), default=-1) < BEFORE_KILL and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            t, i = (int(x) for x in line.split())
            acked[t] = i
        os.kill(child.pid, signal.SIGKILL)  # mid-run: the threads are still writing
        for line in child.stdout:  # what it printed before it died
            t, i = (int(x) for x in line.split())
            acked[t] = i
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) == THREADS and min(acked.values()) >= BEFORE_KILL, acked

    conn = sqlite3.connect(data / "alveare.db")  # replays the WAL, as the next start does
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    store = Store(data, create=False)
    try:
        result = store.verify_audit()
        assert result.ok, result
        rows = store.audit_log(limit=500).data
        while rows[-1].id > 1:
            rows += store.audit_log(limit=500, before=rows[-1].id).data
        assert result.rows == len(rows) and [r.id for r in rows] == list(range(len(rows), 0, -1))
        for t in range(THREADS):
            caps = [
                r.change["spending_cap"][1] for r in rows if r.target == f"acct-{t}" and r.action == "account.update"
            ]
            caps.reverse()
            # Every acknowledged change has its row, in order; at most the one in flight is there besides.
            assert caps[: acked[t] + 1] == [float(i) for i in range(acked[t] + 1)], t
            assert len(caps) - (acked[t] + 1) in (0, 1), (t, len(caps), acked[t])
            assert store.account(f"acct-{t}").spending_cap == caps[-1]
    finally:
        store.close()
