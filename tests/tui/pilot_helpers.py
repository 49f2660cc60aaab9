"""Helpers for driving the TUI with Pilot: wait for the back-end workers, read widgets as text."""

from __future__ import annotations

import time

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tui.app import AlveareApp


def _tables_pending(app: AlveareApp) -> bool:
    """Whether a DataTable still has to measure new rows (it does that when its queue is idle)."""
    return any(
        t._require_update_dimensions or t._new_rows or t._updated_cells for t in app.screen.query(DataTable)
    ) or any(t._require_update_dimensions or t._new_rows for t in app.query(DataTable))


async def settle(pilot: Pilot, rounds: int = 4) -> None:
    """Let worker threads finish and their results reach the widgets (results may start more workers),
    and every table measure its rows, so what is on screen is final."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
    deadline = time.monotonic() + 10
    while _tables_pending(app) and time.monotonic() < deadline:
        await pilot.pause(0.02)


async def press(pilot: Pilot, *keys: str) -> None:
    """Press each key in turn and let the TUI settle after each, as a person waits for the screen."""
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def table_rows(app: AlveareApp, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: AlveareApp, selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    return str(widget.content)


def notifications(app: AlveareApp) -> list[str]:
    return [n.message for n in app._notifications]
