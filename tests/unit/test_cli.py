from __future__ import annotations

import json

from appliance.__main__ import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


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


def test_errors_are_one_line(tmp_path, capsys) -> None:
    d = str(tmp_path)
    code, _, err = run(capsys, "--data-dir", d, "admin", "keys", "create", "--account", "ghost")
    assert code == 1 and err.count("\n") == 1 and "ghost" in err and "Traceback" not in err
    code, _, err = run(capsys, "--data-dir", d, "admin", "accounts", "create", "x", "--plan", "gold")
    assert code == 1 and "gold" in err


def test_env_data_dir(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_DATA_DIR", str(tmp_path / "env"))
    assert run(capsys, "admin", "plans", "list")[0] == 0
    assert (tmp_path / "env" / "alveare.db").exists()


def test_bad_settings_are_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_PORT", "notaport")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "admin", "plans", "list")
    assert code == 2 and "port" in err and err.count("\n") == 1


def test_bad_specialists_file_stops_serve(tmp_path, capsys) -> None:
    bad = tmp_path / "specialists.toml"
    bad.write_text("[specialists.chat]\nsystem_prompt = 'hi'\ntop_p = 9\n")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "serve", "--specialists", str(bad))
    assert code == 2 and str(bad) in err and "line 3" in err and "top_p" in err
