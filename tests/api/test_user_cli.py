"""The `alveare` user and admin commands as a user runs them, against a live server on the real model.

Each command runs as `python -m appliance ...` with its own config file (ALVEARE_CONFIG), so nothing
here reads or writes the real user's ~/.config.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from live import ALVEARE, LiveServer, free_port

pytestmark = pytest.mark.slow


def alveare(
    *args: str, config: Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALVEARE_")}
    full = {**base, "ALVEARE_CONFIG": str(config), **(env or {})}
    return subprocess.run([*ALVEARE, *args], env=full, input=input, capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("alveare: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def user_key(server: LiveServer) -> str:
    return server.new_key("cli-user", plan="scale")


@pytest.fixture
def config(tmp_path: Path, server: LiveServer, user_key: str) -> Path:
    """A config file as `alveare auth login` leaves it."""
    path = tmp_path / "alveare" / "config.toml"
    result = alveare("auth", "login", "--api-key-stdin", "--base-url", server.url, config=path, input=user_key + "\n")
    assert result.returncode == 0, result.stderr
    return path


def test_login_stores_the_key_privately_and_status_and_logout(tmp_path: Path, server: LiveServer, user_key) -> None:
    path = tmp_path / "cfg" / "config.toml"
    result = alveare("auth", "login", "--api-key-stdin", "--base-url", server.url, config=path, input=user_key + "\n")
    assert result.returncode == 0, result.stderr
    assert "Logged in" in result.stdout and user_key not in result.stdout and user_key[:16] in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert f'api_key = "{user_key}"' in text and f'base_url = "{server.url}"' in text

    status = alveare("auth", "status", config=path)
    assert status.returncode == 0 and server.url in status.stdout and "accepts the key" in status.stdout
    assert user_key not in status.stdout

    out = alveare("auth", "logout", config=path)
    assert out.returncode == 0 and "Logged out" in out.stdout
    assert "api_key" not in path.read_text() and server.url in path.read_text()  # the server is kept
    err = one_line_error(alveare("auth", "status", config=path))
    assert "auth login" in err


def test_login_with_a_bad_key_stores_nothing(tmp_path: Path, server: LiveServer, user_key: str) -> None:
    path = tmp_path / "config.toml"
    wrong = user_key[:-6] + ("aaaaaa" if not user_key.endswith("aaaaaa") else "bbbbbb")
    err = one_line_error(
        alveare("auth", "login", "--api-key-stdin", "--base-url", server.url, config=path, input=wrong + "\n")
    )
    assert "401" in err and "request id" in err
    assert not path.exists()


def test_infer_plain_json_stdin_and_stream(config: Path) -> None:
    plain = alveare(
        "infer", "--specialist", "classify", "--prompt", "I love this product!", "--max-tokens", "8", config=config
    )
    assert plain.returncode == 0 and plain.stdout.strip(), plain.stderr
    raw = alveare(
        "infer",
        "--specialist",
        "summarise",
        "--prompt",
        "-",
        "--max-tokens",
        "16",
        "--json",
        config=config,
        input="Revenue grew 23% to $4.2B, driven by cloud.",
    )
    assert raw.returncode == 0, raw.stderr
    body = json.loads(raw.stdout)
    assert body["specialist"] == "summarise" and body["result"] and 0 < body["completion_tokens"] <= 16
    assert body["tokens_used"] == body["prompt_tokens"] + body["completion_tokens"]
    streamed = alveare(
        "infer", "-s", "chat", "-p", "Say hello.", "--max-tokens", "12", "--stream", "--temperature", "0", config=config
    )
    assert streamed.returncode == 0 and streamed.stdout.strip(), streamed.stderr


def test_chat_reads_turns_and_streams_answers(config: Path) -> None:
    result = alveare("chat", "--max-tokens", "12", config=config, input="Hello there.\nName a colour.\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) >= 2  # two answers


def test_specialists_list_update_reset(config: Path) -> None:
    listed = alveare("specialists", "list", config=config)
    assert listed.returncode == 0 and "summarise" in listed.stdout and "ENABLED" in listed.stdout
    prompt = "You are a financial analyst. Use bullet points."
    done = alveare("specialists", "update", "summarise", "--system-prompt", prompt, config=config)
    assert done.returncode == 0, done.stderr
    data = json.loads(alveare("specialists", "list", "--json", config=config).stdout)["data"]
    summarise = next(s for s in data if s["name"] == "summarise")
    assert summarise["custom"] and summarise["system_prompt"] == prompt
    assert alveare("specialists", "reset", "summarise", config=config).returncode == 0
    data = json.loads(alveare("specialists", "list", "--json", config=config).stdout)["data"]
    assert not next(s for s in data if s["name"] == "summarise")["custom"]
    err = one_line_error(alveare("specialists", "update", "poetry", "--system-prompt", "x", config=config))
    assert "404" in err and "poetry" in err and "request id" in err


def test_usage_shows_the_bar_and_the_breakdown(config: Path) -> None:
    assert alveare("infer", "-s", "classify", "-p", "Great!", "--max-tokens", "2", config=config).returncode == 0
    result = alveare("usage", config=config)
    assert result.returncode == 0, result.stderr
    assert "Requests" in result.stdout and "[" in result.stdout and "%" in result.stdout
    assert "SPECIALIST" in result.stdout and "classify" in result.stdout
    report = json.loads(alveare("usage", "--json", config=config).stdout)
    assert report["requests_used"] >= 1 and report["by_specialist"]["classify"] >= 1


def test_hives_status_for_a_user_and_an_admin(config: Path, server: LiveServer) -> None:
    user = alveare("hives", "status", config=config)
    assert user.returncode == 0 and "Health" in user.stdout and "ok" in user.stdout and "admin key" in user.stdout
    admin = alveare("hives", "status", config=config, env={"ALVEARE_API_KEY": server.admin_key})
    assert admin.returncode == 0 and "Slots" in admin.stdout and "tokens/s" in admin.stdout
    assert "KV cache" in admin.stdout and "Tuning      threads " in admin.stdout
    raw = json.loads(
        alveare("hives", "status", "--json", config=config, env={"ALVEARE_API_KEY": server.admin_key}).stdout
    )
    assert raw["health"]["model_loaded"] and raw["hive"]["slots_total"] >= 1 and raw["hive"]["kv"]["cells"] > 0


def test_auth_revoke_needs_an_admin_key(config: Path, server: LiveServer) -> None:
    victim = server.new_key("cli-revoke", plan="starter")
    prefix = victim[:16]
    err = one_line_error(alveare("auth", "revoke", prefix, config=config))
    assert "403" in err and "admin" in err and "request id" in err
    done = alveare("auth", "revoke", prefix, config=config, env={"ALVEARE_API_KEY": server.admin_key})
    assert done.returncode == 0 and "Revoked" in done.stdout, done.stderr
    err = one_line_error(alveare("infer", "-s", "classify", "-p", "hi", config=config, env={"ALVEARE_API_KEY": victim}))
    assert "401" in err


def test_user_errors_are_one_line(config: Path, tmp_path: Path) -> None:
    err = one_line_error(alveare("infer", "-s", "poetry", "-p", "hi", config=config))
    assert "404" in err and "poetry" in err and "request id" in err
    err = one_line_error(alveare("infer", "-s", "classify", "-p", "hi", "--max-tokens", "0", config=config))
    assert "400" in err and "max_tokens" in err
    nowhere = f"http://127.0.0.1:{free_port()}"
    err = one_line_error(alveare("usage", "--base-url", nowhere, config=config))
    assert nowhere.removeprefix("http://") in err
    err = one_line_error(alveare("usage", config=tmp_path / "none.toml"))
    assert "API key" in err
    usage = alveare("infer", "--prompt", "x", config=config)  # argparse: exit 2, its usage text
    assert usage.returncode == 2 and "--specialist" in usage.stderr


def test_admin_commands_go_through_the_running_server(server: LiveServer, tmp_path: Path) -> None:
    """With the server up, `alveare admin` uses the admin API (the TUI's back end), same validation."""
    target = ["--url", server.url, "--admin-key", server.admin_key]
    env = {"ALVEARE_DATA_DIR": str(server.data_dir)}
    cfg = tmp_path / "c.toml"
    made = alveare(
        "admin", *target, "plans", "set", "cli-tiny", "--specialists", "2", "--rpm", "7", config=cfg, env=env
    )
    assert made.returncode == 0 and "Created plan cli-tiny" in made.stdout and "2 specialists" in made.stdout, made
    changed = alveare("admin", *target, "plans", "set", "cli-tiny", "--specialists", "1", "--json", config=cfg, env=env)
    plan = json.loads(changed.stdout)
    assert (plan["specialists_allowed"], plan["requests_per_minute"]) == (1, 7)
    assert (
        alveare("admin", *target, "accounts", "create", "cli-acct", "--plan", "solo", config=cfg, env=env).returncode
        == 0
    )
    chosen = alveare(
        "admin", *target, "accounts", "set-specialists", "cli-acct", "qa,alveare-chat", config=cfg, env=env
    )
    assert chosen.returncode == 0 and "qa, chat" in chosen.stdout, chosen.stderr
    key = json.loads(
        alveare("admin", *target, "keys", "create", "--account", "cli-acct", "--json", config=cfg, env=env).stdout
    )["key"]
    listed = alveare(
        "specialists", "list", "--json", "--base-url", server.url, config=cfg, env={"ALVEARE_API_KEY": key}
    )
    enabled = sorted(s["name"] for s in json.loads(listed.stdout)["data"] if s["enabled"])
    assert enabled == ["chat", "qa"]
    err = one_line_error(
        alveare(
            "admin", *target, "accounts", "set-specialists", "cli-acct", "qa,chat,code,extract", config=cfg, env=env
        )
    )
    assert "solo plan allows 3" in err and "request id" in err
    err = one_line_error(
        alveare("admin", *target, "accounts", "set-specialists", "cli-acct", "poetry", config=cfg, env=env)
    )
    assert "poetry" in err
    # A key the server refuses is one line too.
    err = one_line_error(
        alveare(
            "admin", "--url", server.url, "--admin-key", "alv_live_" + "x" * 39, "plans", "list", config=cfg, env=env
        )
    )
    assert "401" in err
