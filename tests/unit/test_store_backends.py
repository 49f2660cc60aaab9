"""The two back ends of the store hold the same schema and refuse the same things; what is only
PostgreSQL's (the shared secret, a database that does not answer) is checked here too. The
contract tests of test_store.py and test_audit_log.py run on both."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from sqlite_utils import Database

from appliance.core.errors import InvalidRequest, StoreUnavailable
from appliance.store import Store, migrations, pg_migrations
from appliance.store.backends import shown_url
from appliance.store.sql import Db

# Tables only one back end has: the migration records of each, and PostgreSQL's shared key secret
# (a single box keeps it in a file in its data dir).
OWN_TABLES = {"_sqlite_migrations", "alveare_migrations", "store_secret"}


def sqlite_schema(path: Path) -> dict[str, set[str]]:
    db = Database(path)
    try:
        return {t.name: {c.name for c in t.columns} for t in db.tables if t.name not in OWN_TABLES}
    finally:
        db.close()


def pg_schema(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    schema: dict[str, set[str]] = {}
    for table, column in rows:
        if table not in OWN_TABLES:
            schema.setdefault(table, set()).add(column)
    return schema


def test_both_back_ends_have_the_same_steps_and_the_same_tables(tmp_path: Path, postgres) -> None:
    assert [m.name for m in migrations.migrations._migrations] == [name for name, _ in pg_migrations.STEPS]
    url = postgres.new_database()
    Store(tmp_path).close()
    Store(tmp_path, database=url).close()
    assert sqlite_schema(tmp_path / "alveare.db") == pg_schema(url)


def test_nodes_on_one_database_share_the_key_secret(tmp_path: Path, postgres) -> None:
    url = postgres.new_database()
    one, two = Store(tmp_path / "a", database=url), Store(tmp_path / "b", database=url)
    try:
        one.create_account("acme")
        key = one.create_key("acme")
        principal = two.authenticate(key.key)  # another node (another data dir) knows the key
        assert principal is not None and principal.account == "acme"
        assert not (tmp_path / "b" / "key-secret").exists()  # the secret is the database's
        before = two.auth_version()
        one.revoke_key(key.prefix)
        assert two.auth_version() > before and two.authenticate(key.key) is None
    finally:
        one.close()
        two.close()


def test_the_audit_log_refuses_changes_on_postgresql(tmp_path: Path, postgres) -> None:
    url = postgres.new_database()
    store = Store(tmp_path, database=url)
    try:
        store.create_account("acme", actor="tester")
        with psycopg.connect(url, autocommit=True) as conn:
            for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(sql)
        assert store.verify_audit().ok
    finally:
        store.close()


def test_concurrent_appends_from_two_nodes_keep_one_chain(tmp_path: Path, postgres) -> None:
    import threading

    url = postgres.new_database()
    nodes = [Store(tmp_path / n, database=url) for n in ("a", "b")]
    try:

        def act(store: Store, tag: str) -> None:
            for i in range(15):
                store.record_audit("tester", "backup.create", f"{tag}{i}", {})

        threads = [threading.Thread(target=act, args=(s, t)) for s, t in zip(nodes, "ab", strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check = nodes[0].verify_audit()
        assert check.ok and check.rows == 30
    finally:
        for s in nodes:
            s.close()


def test_a_database_url_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="postgresql://"):
        Store(tmp_path, database="mysql://db/alveare")


def test_a_database_that_does_not_answer_is_one_clear_error_within_seconds(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="does not answer") as failed:
        Store(tmp_path, database=f"postgresql://alveare:secret@127.0.0.1:{port}/alveare")
    assert time.monotonic() - started < 10
    assert "secret" not in failed.value.message  # the password never shows


def test_shown_url_hides_the_password() -> None:
    assert shown_url("postgresql://u:pw@db.example:5432/a") == "postgresql://u:***@db.example:5432/a"
    assert shown_url("postgresql://db/a") == "postgresql://db/a"


def test_usage_written_while_the_database_is_down_is_kept_and_written_when_it_is_back(tmp_path: Path, postgres) -> None:
    from appliance.store import UsageRecord, current_period, now_iso

    url = postgres.new_database()
    store = Store(tmp_path, database=url)
    try:
        store.create_account("acme")
        principal = store.authenticate(store.create_key("acme").key)
        assert principal is not None
        record = UsageRecord(
            key_id=principal.key_id,
            account_id=principal.account_id,
            endpoint="chat.completions",
            specialist="chat",
            prompt_tokens=5,
            completion_tokens=2,
            latency_ms=10,
            status=200,
            created_at=now_iso(),
            period=current_period(),
            test=False,
        )
        postgres.stop()
        try:
            kept = store.record_usage(record)  # must not be lost: waits for the database
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):  # an admin's write fails at once instead
                store.create_account("beta")
            assert time.monotonic() - started < 10
            assert not kept.done()
        finally:
            postgres.start()
        kept.result(timeout=30)
        assert store.usage_count("acme") == 1
    finally:
        store.close()


class CommitAnswerLost(Db):
    """A writer connection whose first COMMIT gets no answer: the database ran it (`ran`) or never
    saw it, and either way the connection is gone, as when the network drops at that moment."""

    def __init__(self, conn: psycopg.Connection, ran: bool, lost: list[bool]) -> None:
        super().__init__(conn, "postgresql")
        self.ran, self.lost = ran, lost

    def execute(self, sql: str, params=()):
        if sql == "COMMIT" and not self.lost:
            self.lost.append(True)
            if self.ran:
                super().execute(sql, params)
            self.conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return super().execute(sql, params)


@pytest.mark.parametrize("ran", [True, False], ids=["written", "not-written"])
def test_a_kept_write_whose_commit_got_no_answer_is_written_once(tmp_path: Path, postgres, ran: bool) -> None:
    from appliance.store.backends import _lost, _PgSession
    from appliance.store.database import Writer

    url = postgres.new_database()
    Store(tmp_path, database=url).close()  # the schema, committed_batches included
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (n INTEGER)")
    lost: list[bool] = []

    def connect() -> _PgSession:
        session = _PgSession(url)
        session._db = CommitAnswerLost(session.conn, ran, lost)
        return session

    writer = Writer(connect, lost=_lost, mark_batches=True)
    try:

        def record(db: Db) -> str:
            db.execute("INSERT INTO events (n) VALUES (1)")
            return "recorded"

        kept = writer.submit(record, keep=True)
        assert kept.result(timeout=30) == "recorded"  # once the database answers again
        assert lost == [True]
        later = writer.submit(lambda db: db.one("SELECT count(*) FROM events")[0])
        assert later.result(timeout=30) == 1  # never twice, never lost
    finally:
        writer.close()


def test_reads_are_served_as_soon_as_the_database_is_back(tmp_path: Path, postgres) -> None:
    """While the database was down, the pool's reconnect attempts backed off (1, 2, 4 s...): the first
    read after it is back must not wait for the next attempt, nor fail."""
    url = postgres.new_database()
    store = Store(tmp_path, database=url)
    try:
        store.create_account("acme")
        postgres.stop()
        try:
            with pytest.raises(StoreUnavailable):
                store.usage_count("acme")
            time.sleep(7)  # the pool's attempts now come seconds apart
        finally:
            postgres.start()
        started = time.monotonic()
        assert store.usage_count("acme") == 0
        assert time.monotonic() - started < 2
    finally:
        store.close()
