"""Helpers for driving the TUI with Pilot: wait for the back-end workers, read widgets as text."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tui.app import AlveareApp


async def settle(pilot: Pilot, rounds: int = 4) -> None:
    """Let worker threads finish and their results reach the widgets (results may start more workers)."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()


def table_rows(app: AlveareApp, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: AlveareApp, selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    return str(widget.content)


def notifications(app: AlveareApp) -> list[str]:
    return [n.message for n in app._notifications]
