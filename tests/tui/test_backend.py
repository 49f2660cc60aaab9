"""The typed back-end calls (tui/backend.py) without a server: a call's answer reaches its `done` on the
UI thread, an error becomes a notification, and a server lost mid-call sends the call to the data dir."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pilot_helpers import notifications, settle
from textual.widgets import Button, Input

from appliance.admin.local import LocalAdmin
from appliance.core.errors import ServerUnavailable
from appliance.core.specialists import load_specialists
from appliance.store import Store
from tui.app import AlveareApp
from tui.screens.modals import FormModal

pytestmark = pytest.mark.anyio
SIZE = (100, 30)


class LostServer:
    """An admin API client whose server has just stopped: every call says so."""

    online = True

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise ServerUnavailable("The server stopped.")

        return call


async def test_a_typed_call_answers_on_the_ui_thread(admin: LocalAdmin) -> None:
    admin.create_account("acme", "solo")
    app = AlveareApp(admin, poll_interval=None)
    got: list[object] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.create_account("globex", "starter", done=got.append)
        app.create_account("acme", "starter", done=got.append)  # exists: a notification, no answer
        await settle(pilot)
        assert [a.name for a in got] == ["globex"]  # type: ignore[attr-defined]
        assert any("already exists" in m for m in notifications(app)), notifications(app)


async def test_a_call_whose_server_went_away_is_done_on_the_data_dir(admin: LocalAdmin, tmp_path: Path) -> None:
    def reopen() -> LocalAdmin:  # what open_admin gives when no server answers: the data dir
        return LocalAdmin(Store(tmp_path / "data", create=False), load_specialists(None))

    app = AlveareApp(LostServer(), poll_interval=None, reopen=reopen)  # type: ignore[arg-type]
    got: list[object] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.create_account("made-offline", "solo", done=got.append)
        await settle(pilot)
        assert not app.backend.online and app.sub_title == "server down · working on the data dir"
        assert [a.name for a in got] == ["made-offline"], notifications(app)  # type: ignore[attr-defined]
        assert [o.account.name for o in admin.accounts()] == ["made-offline"]
    app.backend.close()  # type: ignore[attr-defined]


class SlowAdmin:
    """The data dir's LocalAdmin, with account creation held until the test lets it through."""

    def __init__(self, admin: LocalAdmin) -> None:
        self.admin = admin
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.admin, name)

    def create_account(self, name: str, plan: str = "starter") -> Any:
        self.release.wait(10)
        return self.admin.create_account(name, plan)


async def test_a_dialog_cancelled_while_saving_still_reports_the_save(admin: LocalAdmin) -> None:
    slow = SlowAdmin(admin)
    app = AlveareApp(slow, poll_interval=None)  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-name", Input).value = "late"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert form.saving and form.query_one("#submit", Button).disabled
        await pilot.press("ctrl+s")  # a second save waits for the first: one account, not two
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, FormModal)
        slow.release.set()
        await settle(pilot)
        assert [o.account.name for o in admin.accounts()] == ["late"]
        assert any("Created account late" in m for m in notifications(app)), notifications(app)
