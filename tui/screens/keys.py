"""Keys: list by account, create (shown once), revoke, rotate."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, Select, Static

from appliance.store import AccountOverview, CreatedKey, KeyInfo, UsageBreakdown
from tui.format import first_line, number, when
from tui.screens.base import View, reset_table
from tui.screens.modals import ConfirmModal, Field, FormModal, NewKeyModal

ALL = "*"
MAX_ACTIVE_KEYS = 5
# From this width on, the keys table shows times and full account names.
WIDE = 110


class KeysView(View):
    TITLE = "Keys"
    KEY = "3"
    HELP = "API keys by account: create, revoke, rotate"
    BINDINGS = [
        Binding("n", "new_key", "New live key"),
        Binding("t", "new_test_key", "New test key"),
        Binding("d,delete", "revoke", "Revoke"),
        Binding("o", "rotate", "Rotate"),
        Binding("v", "toggle_revoked", "Show revoked"),
        Binding("a", "choose_account", "Account", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.accounts: list[str] = []
        self.keys: list[KeyInfo] = []
        self.requests: dict[str, int] = {}
        self.show_revoked = False
        self._wide = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Label("Account", classes="toolbar-label")
            yield Select([("All accounts", ALL)], value=ALL, allow_blank=False, id="keys-account")
            yield Static("", id="keys-summary", classes="toolbar-info")
        table: DataTable = DataTable(id="keys-table", cursor_type="row", zebra_stripes=True)
        yield table

    @property
    def account(self) -> str | None:
        value = self.query_one("#keys-account", Select).value
        return None if value in (ALL, Select.NULL) else str(value)

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.accounts(self.alveare.period, done=self.show_accounts)
        self.alveare.keys(self.account, done=self.show_keys)
        self.alveare.usage(self.account, self.alveare.period, done=self.show_usage)

    def show_accounts(self, overviews: list[AccountOverview]) -> None:
        names = [o.account.name for o in overviews]
        if names == self.accounts:
            return
        self.accounts = names
        select = self.query_one("#keys-account", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([("All accounts", ALL), *((n, n) for n in names)])
            select.value = current if current in names else ALL

    @on(Select.Changed, "#keys-account")
    def _account_changed(self) -> None:
        self.reload()

    def show_usage(self, usage: UsageBreakdown) -> None:
        self.requests = {row.name: row.requests + row.test for row in usage.by_key}
        self._redraw()

    def show_keys(self, keys: list[KeyInfo]) -> None:
        self.keys = keys
        self._redraw()

    def listed_keys(self) -> list[KeyInfo]:
        """The keys the table lists: revoked ones only while they are shown (not `visible`: a Textual
        widget's own property)."""
        return [k for k in self.keys if self.show_revoked or k.revoked_at is None]

    def on_resize(self) -> None:
        if (self.app.size.width >= WIDE) != self._wide:
            self._redraw()

    def _redraw(self) -> None:
        """Narrow terminals get dates without times and short account names."""
        self._wide = wide = self.app.size.width >= WIDE
        table = self.query_one("#keys-table", DataTable)
        row = table.cursor_row
        requests = "Requests" if wide else "Reqs"
        reset_table(table, ("Prefix", "Account", "Kind", "Created", "Last used", requests, "State"))

        def stamp(iso: str | None) -> str:
            return when(iso) if wide else when(iso)[:10]

        for k in self.listed_keys():
            if k.admin:
                kind = Text("admin", style="bold magenta")  # admin keys are live keys of the admin API
            else:
                kind = Text("test" if k.test else "live", style="cyan" if k.test else "green")
            if k.revoked_at:
                state = Text("revoked " + stamp(k.revoked_at) if wide else "revoked", style="dim red")
            else:
                state = Text("active")
            table.add_row(
                Text(k.prefix, style="dim" if k.revoked_at else "bold"),
                k.account if wide else first_line(k.account, 14),
                kind,
                stamp(k.created_at),
                stamp(k.last_used_at),
                Text(number(self.requests.get(k.prefix, 0)), justify="right"),
                state,
                key=str(k.id),
            )
        listed = self.listed_keys()
        if listed:
            table.move_cursor(row=min(max(row, 0), len(listed) - 1))
        active = sum(1 for k in self.keys if k.revoked_at is None)
        revoked = len(self.keys) - active
        summary = f"{active} active"
        if self.account:
            summary += f" of {MAX_ACTIVE_KEYS}"
        if revoked:
            summary += f", {revoked} revoked{'' if self.show_revoked else ' (v)'}"
        summary += f" · reqs in {self.alveare.period}"
        self.query_one("#keys-summary", Static).update(summary)

    def selected(self) -> KeyInfo | None:
        table = self.query_one("#keys-table", DataTable)
        listed = self.listed_keys()
        if not listed:
            self.notify("No keys here yet: n creates one.", severity="warning")
            return None
        return listed[min(max(table.cursor_row, 0), len(listed) - 1)]

    # --- actions ------------------------------------------------------------------------------
    def action_choose_account(self) -> None:
        self.query_one("#keys-account", Select).focus()

    def action_toggle_revoked(self) -> None:
        self.show_revoked = not self.show_revoked
        self._redraw()

    def action_new_key(self, test: bool = False) -> None:
        kind = "test" if test else "live"

        def created(key: CreatedKey) -> None:
            self.reload()
            self.app.push_screen(NewKeyModal(key))

        if self.account:
            self.alveare.create_key(self.account, test=test, done=created)
            return
        if not self.accounts:
            self.notify("Create an account first (Accounts, n).", severity="warning")
            return
        # All accounts are listed: ask which one, starting from the highlighted key's account
        # (unless that is an admin key: admin accounts rarely want more keys).
        admin_accounts = {k.account for k in self.keys if k.admin}
        current = next((a for a in self.accounts if a not in admin_accounts), self.accounts[0])
        highlighted = self.selected() if self.listed_keys() else None
        if highlighted is not None and not highlighted.admin:
            current = highlighted.account

        def chosen(values: dict[str, Any], form: FormModal) -> None:
            self.alveare.create_key(values["account"], test=test, done=form.closing(created), failed=form.failed)

        self.app.push_screen(
            FormModal(
                f"New {kind} key",
                [Field("account", "Account", current, kind="select", options=self.accounts)],
                submit="Create key",
                save=chosen,
            )
        )

    def action_new_test_key(self) -> None:
        self.action_new_key(test=True)

    def action_revoke(self) -> None:
        key = self.selected()
        if key is None:
            return
        if key.revoked_at:
            self.notify(f"Key {key.prefix} is already revoked.")
            return
        warning = ""
        if key.admin:
            warning = "\n\nThis is an admin key: tools that use it (this TUI over the admin API included) stop working."

        def revoke(yes: bool | None) -> None:
            if yes:
                self.alveare.revoke_key(key.prefix, done=self._revoked)

        self.app.push_screen(
            ConfirmModal(
                "Revoke key",
                f"Revoke {key.prefix}… of {key.account}? Requests with it fail at once; this cannot be undone."
                + warning,
                yes="Revoke",
            ),
            revoke,
        )

    def _revoked(self, key: KeyInfo) -> None:
        self.notify(f"Revoked {key.prefix}… of {key.account}.")
        self.reload()

    def action_rotate(self) -> None:
        old = self.selected()
        if old is None:
            return
        if old.revoked_at:
            self.notify(f"Key {old.prefix} is already revoked; create a new one with n.", severity="warning")
            return

        def ask_revoke(_: None) -> None:
            def revoke(yes: bool | None) -> None:
                if yes:
                    self.alveare.revoke_key(old.prefix, done=self._revoked)
                else:
                    self.notify(f"{old.prefix}… stays active; revoke it (d) once the new key is deployed.")

            self.app.push_screen(
                ConfirmModal(
                    "Rotate: revoke the old key?",
                    f"Revoke the old key {old.prefix}… now? Do it once the new key is deployed and works; "
                    "until then both keys are active.",
                    yes="Revoke old key",
                    no="Keep it for now",
                ),
                revoke,
            )

        def created(key: CreatedKey) -> None:
            self.reload()
            self.app.push_screen(
                NewKeyModal(key, note=f"Step 1 of 2: deploy this key. Next you confirm revoking {old.prefix}…"),
                ask_revoke,
            )

        self.alveare.create_key(old.account, test=old.test, done=created)
