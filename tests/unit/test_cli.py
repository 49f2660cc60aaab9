from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.store import Store


@pytest.fixture(autouse=True)
def no_server_here(monkeypatch) -> None:
    """The admin commands use a server when one answers on the configured port: make sure none does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ALVEARE_PORT", str(port))


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """A data dir as `alveare serve` leaves it: the admin commands never create one."""
    Store(tmp_path).close()
    return tmp_path


def test_accounts_and_keys(tmp_path, capsys) -> None:
    d = str(tmp_path)
    assert run(capsys, "--data-dir", d, "admin", "accounts", "create", "acme", "--plan", "solo")[0] == 0
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "acme", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["key"].startswith("alv_live_") and created["key"].startswith(created["prefix"])
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "acme", "--test")
    assert "alv_test_" in out and "shown once" in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "list")
    assert created["prefix"] in out and created["key"] not in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "revoke", created["prefix"])
    assert code == 0 and "Revoked" in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "accounts", "list")
    assert "acme" in out and "solo" in out


def test_audit_lists_and_verifies_on_the_data_dir(tmp_path, capsys) -> None:
    d = str(tmp_path)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "list")
    assert (code, out) == (0, "No admin actions recorded yet.\n")
    assert run(capsys, "--data-dir", d, "admin", "accounts", "create", "acme", "--plan", "solo")[0] == 0
    assert run(capsys, "--data-dir", d, "admin", "accounts", "set-cap", "acme", "25")[0] == 0
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[1].split()[0] == "2" and lines[1].split()[3:] == [
        "cli-local",
        "account.update",
        "acme",
        '{"spending_cap":[null,25.0]}',
    ]
    assert lines[2].split()[3:] == ["cli-local", "account.create", "acme", '{"plan":"solo"}']
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "list", "--limit", "1")
    assert out.splitlines()[-1] == "Older rows: --before 2. Each change in full: --json."
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "verify")
    assert code == 0 and out.startswith("The audit log's chain holds: 2 rows, the newest hashing to ")
    code, _, err = run(capsys, "--data-dir", d, "admin", "audit", "list", "--limit", "0")
    assert code == 1 and err.count("\n") == 1 and err.endswith("limit must be a whole number from 1 to 500.\n")
    conn = sqlite3.connect(tmp_path / "alveare.db")
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'nobody' WHERE id = 1")
    conn.commit()
    conn.close()
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "verify")
    assert code == 1 and out == (
        "The audit log's chain breaks at row 1: its contents do not match its hash "
        "(it was changed after it was written).\n"
    )
    code, out, _ = run(capsys, "--data-dir", d, "admin", "audit", "verify", "--json")
    assert code == 1 and json.loads(out)["bad_row"] == 1


def test_errors_are_one_line(tmp_path, capsys) -> None:
    d = str(tmp_path)
    code, _, err = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "ghost")
    assert code == 1 and err.count("\n") == 1 and "ghost" in err and "Traceback" not in err
    code, _, err = run(capsys, "--data-dir", d, "admin", "accounts", "create", "x", "--plan", "gold")
    assert code == 1 and "gold" in err


def test_backup_to_a_new_folder_and_to_a_missing_folder(tmp_path, capsys) -> None:
    d = str(tmp_path)
    out_dir = tmp_path / "backups" / "daily"
    code, out, err = run(capsys, "--data-dir", d, "admin", "backup", f"{out_dir}/")
    assert code == 0 and err == "" and out_dir.is_dir()
    assert [p.suffix for p in out_dir.iterdir()] == [".db"] and str(out_dir) in out
    # No slash and no folder: one line that says how to get one, no traceback and nothing made.
    code, out, err = run(capsys, "--data-dir", d, "admin", "backup", str(tmp_path / "nowhere" / "x.db"))
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "does not exist" in err and "give a folder ending in /" in err
    assert not (tmp_path / "nowhere").exists()


def test_env_data_dir(tmp_path, capsys, monkeypatch) -> None:
    Store(tmp_path / "env").close()
    monkeypatch.setenv("ALVEARE_DATA_DIR", str(tmp_path / "env"))
    code, out, _ = run(capsys, "admin", "plans", "list")
    assert code == 0 and "starter" in out


@pytest.mark.parametrize(
    "command",
    [
        ["admin", "plans", "list"],
        ["admin", "accounts", "create", "acme"],
        ["admin", "keys", "create", "--account", "admin"],
        ["admin", "keys", "list"],
        ["admin", "usage"],
        ["admin", "audit", "list"],
        ["admin", "audit", "verify"],
    ],
)
def test_admin_commands_never_create_a_data_dir(tmp_path, capsys, command) -> None:
    for missing in (tmp_path / "typo", tmp_path / "empty"):
        if missing.name == "empty":
            missing.mkdir()  # a folder without a store is no data dir either
        code, _, err = run(capsys, "--data-dir", str(missing), *command)
        assert code == 1 and err.count("\n") == 1 and str(missing) in err and "no alveare.db" in err
        assert not (missing / "alveare.db").exists()
    assert not (tmp_path / "typo").exists()


def test_admin_keys_from_the_command_line(tmp_path, capsys) -> None:
    d = str(tmp_path)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "create", "--admin", "--json")
    assert code == 0
    admin_key = json.loads(out)
    principal = Store(tmp_path).authenticate(admin_key["key"])
    assert principal is not None and principal.admin and principal.account == "admin" and not principal.test
    assert run(capsys, "--data-dir", d, "admin", "accounts", "create", "acme")[0] == 0
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "acme", "--json")
    live = json.loads(out)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "acme", "--test", "--json")
    test = json.loads(out)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "keys", "list")
    kinds = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:]}
    assert kinds == {admin_key["prefix"]: "admin", live["prefix"]: "live", test["prefix"]: "test"}
    assert "*" not in out
    for bad in (["--admin", "--test"], ["--admin", "--account", "acme"], []):
        code, _, err = run(capsys, "--data-dir", d, "admin", "keys", "create", *bad)
        assert code == 1 and err.count("\n") == 1, err


def test_data_dir_is_private(tmp_path: Path, capsys) -> None:
    data = tmp_path / "fresh"
    Store(data).close()
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "alveare.db").stat().st_mode & 0o777 == 0o600
    # an older data dir, created with the umask's modes, is tightened when it is opened
    data.chmod(0o755)
    for name in ("alveare.db", "alveare.db-wal", "alveare.db-shm"):
        (data / name).touch()
        (data / name).chmod(0o644)
    assert run(capsys, "--data-dir", str(data), "admin", "plans", "list")[0] == 0
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "alveare.db").stat().st_mode & 0o777 == 0o600
    for name in ("alveare.db-wal", "alveare.db-shm"):  # a clean close removes these
        assert not (data / name).exists() or (data / name).stat().st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize("kind", ["missing", "directory", "not-gguf", "unreadable"])
def test_a_bad_model_file_stops_serve_before_it_listens(tmp_path, capsys, kind) -> None:
    model = tmp_path / "model.gguf"
    if kind == "directory":
        model.mkdir()
    elif kind == "not-gguf":
        model.write_bytes(b"<html>not a model</html>")
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        model.write_bytes(b"GGUF....")
        model.chmod(0)
    data = tmp_path / "new-data"
    code, out, err = run(capsys, "--data-dir", str(data), "serve", "--model", str(model))
    assert code == 2 and err.count("\n") == 1 and str(model) in err and "Traceback" not in err
    assert "Listening" not in out and not data.exists()


def test_a_port_in_use_stops_serve_before_it_listens(tmp_path, capsys) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(60))  # passes the pre-check; the port check comes first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "--data-dir", str(tmp_path), "serve", "--port", str(port), "--model", str(model))
    assert code == 2 and err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "--port" in err
    assert "Listening" not in out


def test_bad_settings_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_PORT", "notaport")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "admin", "plans", "list")
    assert code == 2 and "port" in err and err.count("\n") == 1


def test_bad_flash_attention_setting_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_FLASH_ATTN", "sometimes")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "admin", "plans", "list")
    assert code == 2 and "flash attention" in err and "'sometimes'" in err and err.count("\n") == 1


def test_bad_specialists_file_stops_serve(tmp_path, capsys) -> None:
    bad = tmp_path / "specialists.toml"
    bad.write_text("[specialists.chat]\nsystem_prompt = 'hi'\ntop_p = 9\n")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "serve", "--specialists", str(bad))
    assert code == 2 and str(bad) in err and "line 3" in err and "top_p" in err


def test_plans_accounts_and_usage_commands(tmp_path, capsys) -> None:
    d = str(tmp_path)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "plans", "set", "tiny", "--rpm", "3", "--monthly", "4")
    assert code == 0 and "Created plan tiny" in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "plans", "set", "solo", "--custom-prompts", "yes")
    assert code == 0 and "Updated plan solo" in out and "custom prompts yes" in out
    assert run(capsys, "--data-dir", d, "admin", "accounts", "create", "acme", "--plan", "solo")[0] == 0
    code, out, _ = run(capsys, "--data-dir", d, "admin", "accounts", "set-plan", "acme", "tiny")
    assert code == 0 and "tiny" in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "accounts", "set-cap", "acme", "25")
    assert code == 0 and "25" in out
    code, out, _ = run(capsys, "--data-dir", d, "admin", "accounts", "set-specialists", "acme", "qa,alveare-chat")
    assert code == 0 and "qa, chat" in out
    code, _, err = run(capsys, "--data-dir", d, "admin", "accounts", "set-specialists", "acme", "qa,poetry")
    assert code == 1 and "poetry" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "--data-dir", d, "admin", "usage", "--account", "acme", "--json")
    report = json.loads(out)["usage"][0]
    assert code == 0 and (report["requests_used"], report["requests_limit"], report["spending_cap"]) == (0, 4, 25)
    code, out, _ = run(capsys, "--data-dir", d, "admin", "usage")
    assert code == 0 and "acme" in out
    code, _, err = run(capsys, "--data-dir", d, "admin", "plans", "set", "tiny", "--rpm", "0")
    assert code == 1 and "requests_per_minute" in err


def test_plans_set_specialists_on_the_data_dir(tmp_path, capsys) -> None:
    """--specialists here is the plan's number, never serve's specialists file."""
    d = str(tmp_path)
    code, out, err = run(capsys, "--data-dir", d, "admin", "plans", "set", "tiny", "--specialists", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["specialists_allowed"] == 2
    code, out, _ = run(capsys, "--data-dir", d, "admin", "plans", "set", "solo", "--specialists", "4")
    assert code == 0 and "Updated plan solo" in out and "4 specialists" in out
    code, _, err = run(capsys, "--data-dir", d, "admin", "plans", "set", "solo", "--specialists", "-1")
    assert code == 1 and "specialists_allowed" in err and err.count("\n") == 1
    code, _, err = run(capsys, "--data-dir", d, "admin", "plans", "set", "new", "--base", "gold")
    assert code == 1 and "gold" in err


def test_a_command_whose_extra_is_not_installed_names_the_extra(monkeypatch, capsys) -> None:
    """`pip install alveare` alone has no server: `alveare serve` says which extra, not a traceback."""
    from appliance.cli import serve

    def missing(args):
        raise ModuleNotFoundError("No module named 'litestar'", name="litestar")

    monkeypatch.setattr(serve, "serve", missing)
    code = main(["serve"])
    err = capsys.readouterr().err
    assert code == 2 and err == "alveare: error: this command needs pip install 'alveare[all]' (litestar is missing)\n"


def test_the_sdk_finds_the_local_server_by_the_variables_serve_reads() -> None:
    from alveare.config import local_server, resolve

    assert local_server({}) == "http://127.0.0.1:8080"
    assert local_server({"ALVEARE_PORT": "9000"}) == "http://127.0.0.1:9000"
    assert local_server({"ALVEARE_HOST": "0.0.0.0", "ALVEARE_PORT": "9443"}) == "https://127.0.0.1:9443"
    assert local_server({"ALVEARE_HOST": "::", "ALVEARE_INSECURE_HTTP": "1"}) == "http://127.0.0.1:8080"
    assert local_server({"ALVEARE_HOST": "::1"}) == "http://[::1]:8080"
    env = {"ALVEARE_PORT": "9001", "ALVEARE_CONFIG": "/nonexistent/config.toml"}
    assert resolve(None, None, env).base_url == "http://127.0.0.1:9001"
    assert resolve(None, "http://other:1/v1", env).base_url == "http://other:1"
    import pytest

    from alveare.errors import AlveareError

    with pytest.raises(AlveareError, match="ALVEARE_PORT"):
        local_server({"ALVEARE_PORT": "eighty"})
