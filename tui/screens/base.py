"""What every screen (a tab of the app) shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.containers import Vertical

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

    def call(self, method: str, *args: Any, done: Any = None, **kwargs: Any) -> None:
        """Run back-end `method` in a worker thread; `done(result)` runs on the UI thread."""
        self.alveare.call(method, *args, done=done, **kwargs)

    def reload(self) -> None:
        """Fetch this screen's data again (on showing the tab, after a change, on Ctrl+R)."""

    def focus_main(self) -> None:
        """Focus the screen's main widget when its tab is shown."""
        for widget in self.query("DataTable, Input"):
            if widget.focusable:
                widget.focus()
                return
        self.focus()
