"""The admin TUI: one App over an injected `AdminOps` back end (the admin API, or the data dir)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widgets import Footer, Header, TabbedContent, TabPane

from appliance.admin.ops import AdminOps
from appliance.store import current_period
from tui.backend import BackendApp
from tui.screens.accounts import AccountsView
from tui.screens.audit import AuditView
from tui.screens.base import View
from tui.screens.hive import HiveView
from tui.screens.keys import KeysView
from tui.screens.modals import HelpModal
from tui.screens.prompts import PromptsView
from tui.screens.specialists import SpecialistsView
from tui.screens.usage import UsageView

VIEWS: list[type[View]] = [HiveView, AccountsView, KeysView, SpecialistsView, PromptsView, UsageView, AuditView]

KEY_NAMES = {
    "question_mark": "?",
    "delete": "Del",
    "escape": "Esc",
    "enter": "Enter",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "tab": "Tab",
}


def key_label(keys: str) -> str:
    """'ctrl+r,f5' -> 'Ctrl+R / F5'."""
    labels = []
    for key in keys.split(","):
        key = key.strip()
        if key in KEY_NAMES:
            labels.append(KEY_NAMES[key])
        elif "+" in key:
            *mods, last = key.split("+")
            labels.append("+".join([m.title() for m in mods] + [KEY_NAMES.get(last, last.upper())]))
        elif len(key) > 1:
            labels.append(key.upper() if key.startswith("f") and key[1:].isdigit() else key.title())
        else:
            labels.append(key)
    return " / ".join(labels)


def view_id(view: type[View]) -> str:
    return view.__name__.removesuffix("View").lower()


def _bindings(cls: type) -> list[Binding]:
    return [b for b in getattr(cls, "BINDINGS", []) if isinstance(b, Binding)]


class AlveareCommands(Provider):
    """The command palette (Ctrl+P) lists every action of every screen."""

    def _commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        app: AlveareApp = self.app  # type: ignore[assignment]
        for name, help_text, target, action in app.action_table():
            yield name, help_text, partial(app.run_command, target, action)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class AlveareApp(BackendApp):
    """`alveare tui`. The back end is injected: tests pass a LocalAdmin or an AdminClient. Screens call it
    through the typed worker methods of `BackendApp` (`self.alveare.accounts(period, done=...)`)."""

    CSS_PATH = "app.tcss"
    TITLE = "Alveare admin"
    COMMANDS: ClassVar = App.COMMANDS | {AlveareCommands}
    BINDINGS: ClassVar = [
        *(Binding(view.KEY, f"show('{view_id(view)}')", view.TITLE, show=False) for view in VIEWS),
        Binding("f1,question_mark", "help", "Help"),
        Binding("ctrl+r,f5", "refresh", "Refresh", show=False),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(
        self,
        backend: AdminOps,
        *,
        period: str | None = None,
        poll_interval: float | None = 2.0,
        reopen: Callable[[], AdminOps] | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        """`reopen` builds a fresh back end (the admin API if a server answers, else the data dir);
        `probe` says cheaply whether a server answers, so an offline app reconnects only then."""
        super().__init__(backend, reopen=reopen, probe=probe)
        self.fixed_period = period
        self.poll_interval = poll_interval

    # --- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for view in VIEWS:
                with TabPane(f"{view.KEY} {view.TITLE}", id=view_id(view)):
                    yield view(id=f"view-{view_id(view)}")
        yield Footer()

    def on_mount(self) -> None:
        self._show_connection()

    @property
    def period(self) -> str:
        """The billing period the screens show (the current month, UTC, unless fixed)."""
        return self.fixed_period or current_period()

    def view(self, name: str) -> View:
        return self.query_one(f"#view-{name}", View)

    def current_view(self) -> View:
        active = self.query_one("#tabs", TabbedContent).active
        return self.view(active or "hive")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or "hive"
        view = self.view(pane)
        view.reload()
        view.focus_main()

    # --- actions --------------------------------------------------------------------------
    def action_show(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = name

    def action_refresh(self) -> None:
        self.current_view().reload()

    def action_help(self) -> None:
        sections: list[tuple[str, list[tuple[str, str]]]] = []
        sections.append(
            (
                "Everywhere",
                [(key_label(b.key), b.description) for b in _bindings(type(self))]
                + [
                    ("Ctrl+P", "Command palette: search every action"),
                    ("Tab / Shift+Tab", "Move between tables and fields"),
                ],
            )
        )
        for view in VIEWS:
            rows = [(key_label(b.key), b.description) for b in _bindings(view)]
            if rows:
                sections.append((f"{view.KEY} {view.TITLE}: {view.HELP}", rows))
        sections.append(("In dialogs", [("Enter / Ctrl+S", "Save"), ("Esc", "Cancel"), ("y / n", "Confirm or not")]))
        self.push_screen(HelpModal(sections))

    def action_table(self) -> list[tuple[str, str, str | None, str]]:
        """(name, help, screen or None, action) for every action: the palette and the help use it."""
        table: list[tuple[str, str, str | None, str]] = []
        for view in VIEWS:
            table.append((f"Go to {view.TITLE}", f"{view.HELP} ({view.KEY})", None, f"show('{view_id(view)}')"))
        table.append(("Help", "Every key and action (F1)", None, "help"))
        table.append(("Refresh", "Fetch this screen's data again (Ctrl+R)", None, "refresh"))
        for view in VIEWS:
            for b in _bindings(view):
                name = f"{view.TITLE}: {b.description}"
                table.append((name, f"{key_label(b.key)} on {view.TITLE}", view_id(view), b.action))
        return table

    async def run_command(self, target: str | None, action: str) -> None:
        if target is None:
            await self.run_action(action)
            return
        self.action_show(target)
        view = self.view(target)
        await self.run_action(action, view)
