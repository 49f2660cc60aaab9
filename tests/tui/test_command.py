"""`alveare tui`: the command builds the back end from the settings and runs the app."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.store import Store
from tui.app import AlveareApp


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """The command points logging at Textual's handler; put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_tui_command_without_a_server_opens_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def run(self: AlveareApp) -> None:
        seen["online"] = self.backend.online
        seen["accounts"] = [o.account.name for o in self.backend.accounts()]
        seen["reopen"] = self.reopen is not None and self.probe is not None
        seen["probe"] = self.probe()  # nothing listens on port 9

    monkeypatch.setattr(AlveareApp, "run", run)
    monkeypatch.setenv("ALVEARE_ADMIN_KEY", "alv_live_not_used_offline")
    data = tmp_path / "data"
    Store(data).close()  # as `alveare serve` leaves it
    assert main(["--data-dir", str(data), "admin", "accounts", "create", "acme"]) == 0
    assert main(["--data-dir", str(data), "tui", "--url", "http://127.0.0.1:9"]) == 0
    assert seen == {"online": False, "accounts": ["acme"], "reopen": True, "probe": False}


def test_tui_on_a_missing_data_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo"
    assert main(["--data-dir", str(missing), "tui", "--url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "no alveare.db" in err and err.count("\n") == 1 and not missing.exists()


def test_tui_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tui", "--help"])
    out = capsys.readouterr().out
    assert "--url" in out and "--admin-key" in out and "ALVEARE_ADMIN_KEY" in out
