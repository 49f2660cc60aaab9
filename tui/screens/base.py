"""What every screen (a tab of the app) shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Vertical
from textual.widgets import DataTable

if TYPE_CHECKING:
    from tui.app import AlveareApp


class View(Vertical):
    """One screen of the app, shown as a tab. Loads its data in workers, never on the UI thread."""

    TITLE: ClassVar[str] = ""
    KEY: ClassVar[str] = ""
    HELP: ClassVar[str] = ""

    @property
    def alveare(self) -> AlveareApp:
        return self.app  # type: ignore[return-value]

    def reload(self) -> None:
        """Fetch this screen's data again (on showing the tab, after a change, on Ctrl+R)."""

    def focus_main(self) -> None:
        """Focus the screen's main widget when its tab is shown."""
        for widget in self.query("DataTable, Input"):
            if widget.focusable:
                widget.focus()
                return
        self.focus()


def reset_table(table: DataTable, labels: list[str] | tuple[str, ...], *, fresh: bool = False) -> None:
    """Empty a table for a redraw, keeping its columns when they are the same labels (the usual
    case) and replacing them only when the set changes (a resize across a width step, a regroup),
    or when `fresh` asks: a column's width only grows, so cells cut to a new width need new columns."""
    labels = tuple(labels)
    if not fresh and getattr(table, "_alveare_columns", None) == labels:
        table.clear()
        return
    table.clear(columns=True)
    for label in labels:
        table.add_column(label)
    table._alveare_columns = labels  # type: ignore[attr-defined]
