"""The admin TUI: one App over an injected `AdminOps` back end (the admin API, or the data dir)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.widgets import Footer, Header, TabbedContent, TabPane

from appliance.admin.ops import AdminOps
from appliance.core.errors import AlveareError, ServerUnavailable
from appliance.store import current_period
from tui.screens.accounts import AccountsView
from tui.screens.base import View
from tui.screens.hive import HiveView
from tui.screens.keys import KeysView
from tui.screens.modals import HelpModal
from tui.screens.prompts import PromptsView
from tui.screens.specialists import SpecialistsView
from tui.screens.usage import UsageView

VIEWS: list[type[View]] = [HiveView, AccountsView, KeysView, SpecialistsView, PromptsView, UsageView]

# Back-end methods that only a running server can answer; the rest also work on the data dir.
LIVE_ONLY = {"hive_status", "try_it"}

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


class AlveareApp(App[None]):
    """`alveare tui`. The back end is injected: tests pass a LocalAdmin or an AdminClient."""

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
        super().__init__()
        self.backend = backend
        self.fixed_period = period
        self.poll_interval = poll_interval
        self.reopen = reopen
        self.probe = probe
        self._reopen_lock = threading.Lock()
        # Why the last attempt to reach a server that answers failed, if it did.
        self.connect_error: str | None = None

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

    # --- the back end ---------------------------------------------------------------------
    def call(self, method: str, *args: Any, done: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        """Run a back-end method in a worker thread; errors become notifications, never tracebacks."""
        self.run_worker(
            partial(self._call, method, args, kwargs, done),
            thread=True,
            group="backend",
            exit_on_error=False,
            description=method,
        )

    def _call(self, method: str, args: tuple, kwargs: dict, done: Callable[[Any], Any] | None) -> None:
        for attempt in (1, 2):
            backend = self.backend
            try:
                result = getattr(backend, method)(*args, **kwargs)
            except ServerUnavailable as exc:
                # The server went away: management falls back to the data dir and tries once more.
                if attempt == 1 and method not in LIVE_ONLY and backend.online and self.server_lost():
                    continue
                self._from_thread(self.notify_once, exc.message, title="Server unavailable", severity="warning")
                return
            except AlveareError as exc:
                self._from_thread(self.notify_once, exc.message, title="Not done", severity="error")
                return
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                self._from_thread(self.notify_once, message, title="Unexpected error", severity="error")
                return
            if done is not None:
                self._from_thread(done, result)
            return

    def notify_once(self, message: str, *, title: str = "", severity: str = "information") -> None:
        """A notification, unless the same one is already showing (several screens loading at once
        hit the same error)."""
        if any(n.message == message and n.title == title for n in self._notifications):
            return
        self.notify(message, title=title, severity=severity)  # type: ignore[arg-type]

    def _from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app is shutting down
            self.call_from_thread(callback, *args, **kwargs)

    def ensure_online(self) -> AdminOps:
        """(Worker thread.) Offline with a way to reconnect: try to reach the server again."""
        backend = self.backend
        if backend.online or self.reopen is None:
            return backend
        if self.probe is not None and not self.probe():
            return backend
        with self._reopen_lock:
            try:
                fresh = self.reopen()
            except AlveareError as exc:
                # A server answers but will not let us in (a wrong admin key, another data dir).
                self.connect_error = exc.message
                return self.backend
            except Exception as exc:
                self.connect_error = f"{type(exc).__name__}: {exc}"
                return self.backend
            self.connect_error = None
            if fresh.online:
                self._from_thread(self.set_backend, fresh)
                return fresh
            _close(fresh)
        return self.backend

    def server_lost(self) -> bool:
        """(Worker thread.) An online back end lost its server: switch to the data dir if we can."""
        if not self.backend.online or self.reopen is None:
            return False
        with self._reopen_lock:
            if not self.backend.online:
                return True
            try:
                fresh = self.reopen()
            except Exception:
                return False
            if fresh.online:
                _close(fresh)
                return False
            self._from_thread(self.set_backend, fresh)
            return True

    def set_backend(self, backend: AdminOps) -> None:
        old, self.backend = self.backend, backend
        if old is not backend:
            _close(old)
        self._show_connection()
        if backend.online:
            self.notify("Connected to the server: changes apply through its admin API.", title="Online")
        else:
            self.notify("The server is down: managing the data dir directly.", title="Offline", severity="warning")

    def _show_connection(self) -> None:
        if self.backend.online:
            self.sub_title = "server online"
        else:
            self.sub_title = "server down · working on the data dir"


def _close(backend: AdminOps) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
