"""Custom prompts: per account, which specialists have their own system prompt; view, edit, reset."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Label, Select, Static

from appliance.admin.ops import SpecialistProfile
from appliance.store import ADMIN_ACCOUNT, AccountOverview, BillingPlan, CustomPrompt
from tui.format import first_line, when
from tui.screens.base import View
from tui.screens.modals import ConfirmModal, Field, FormModal


class PromptsView(View):
    TITLE = "Prompts"
    KEY = "5"
    HELP = "Custom system prompts per account"
    BINDINGS = [
        Binding("e", "edit", "Edit prompt"),
        Binding("d", "reset", "Reset to default"),
        Binding("a", "choose_account", "Account", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.overviews: list[AccountOverview] = []
        self.plans: dict[str, BillingPlan] = {}
        self.profiles: list[SpecialistProfile] = []
        self.custom: dict[str, CustomPrompt] = {}
        self._drawn_for = 0

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Label("Account", classes="toolbar-label")
            yield Select([], prompt="Choose an account", id="prompts-account")
            yield Static("", id="prompts-note", classes="toolbar-info")
        table: DataTable = DataTable(id="prompts-table", cursor_type="row", zebra_stripes=True)
        table.add_column("Specialist", key="name")
        table.add_column("Prompt", key="source")
        table.add_column("Updated", key="updated")
        table.add_column("Begins", key="begins")
        yield table
        with VerticalScroll(id="prompt-detail"):
            yield Static("", id="prompt-text")

    @property
    def account(self) -> str | None:
        value = self.query_one("#prompts-account", Select).value
        return None if value is Select.NULL else str(value)

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.plans(done=self.show_plans)
        self.alveare.specialists(done=self.show_profiles)
        if self.account:
            self.alveare.custom_prompts(self.account, done=self.show_custom)

    def show_plans(self, plans: list[BillingPlan]) -> None:
        # Plans first, then accounts: the account list marks which plans allow custom prompts.
        self.plans = {p.name: p for p in plans}
        self.alveare.accounts(self.alveare.period, done=self.show_accounts)

    def show_accounts(self, overviews: list[AccountOverview]) -> None:
        old = [o.account.name for o in self.overviews]
        self.overviews = overviews
        names = [o.account.name for o in overviews]
        select = self.query_one("#prompts-account", Select)
        if names != old:
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([(n, n) for n in names])
                if current in names:
                    select.value = current
            if select.value is Select.NULL and names:
                # The first account that may have custom prompts (the built-in admin account last).
                ordered = sorted(overviews, key=lambda o: o.account.name == ADMIN_ACCOUNT)
                select.value = next((o.account.name for o in ordered if self._allows(o)), ordered[0].account.name)
        self._redraw()

    def _allows(self, overview: AccountOverview) -> bool:
        plan = self.plans.get(overview.account.plan)
        return bool(plan and plan.custom_prompts)

    @on(Select.Changed, "#prompts-account")
    def _account_changed(self) -> None:
        self.custom = {}
        self._redraw()
        if self.account:
            self.alveare.custom_prompts(self.account, done=self.show_custom)

    def show_profiles(self, profiles: list[SpecialistProfile]) -> None:
        self.profiles = profiles
        self._redraw()

    def show_custom(self, prompts: list[CustomPrompt]) -> None:
        self.custom = {p.specialist: p for p in prompts}
        self._redraw()

    def _redraw(self) -> None:
        self._drawn_for = self._begins
        table = self.query_one("#prompts-table", DataTable)
        row = table.cursor_row
        table.clear()
        account = self.account
        if account is None:
            self.query_one("#prompts-note", Static).update("No accounts yet: see Accounts (2).")
            self.query_one("#prompt-text", Static).update("")
            return
        for p in self.profiles:
            custom = self.custom.get(p.name)
            table.add_row(
                p.name,
                Text("custom", style="bold yellow") if custom else Text("default", style="dim"),
                when(custom.updated_at) if custom else "-",
                first_line((custom or p).system_prompt, self._begins),
                key=p.name,
            )
        if self.profiles:
            table.move_cursor(row=min(max(row, 0), len(self.profiles) - 1))
        overview = next((o for o in self.overviews if o.account.name == account), None)
        note = Text(f"{len(self.custom)} custom")
        if overview is not None:
            plan = self.plans.get(overview.account.plan)
            if plan is not None and not plan.custom_prompts:
                note = Text(f"the {plan.name} plan has no custom prompts", style="yellow")
                if self.custom:
                    note.append(f" ({len(self.custom)} stored, unused)", style="yellow")
        self.query_one("#prompts-note", Static).update(note)
        self.show_detail()

    @property
    def _begins(self) -> int:
        """Room for the start of each prompt: the terminal's width less the other columns."""
        return max(20, self.app.size.width - 52)

    def on_resize(self) -> None:
        if self._begins != self._drawn_for:
            self._redraw()

    def selected(self) -> SpecialistProfile | None:
        if not self.profiles:
            return None
        row = self.query_one("#prompts-table", DataTable).cursor_row
        return self.profiles[min(max(row, 0), len(self.profiles) - 1)]

    @on(DataTable.RowHighlighted, "#prompts-table")
    def show_detail(self) -> None:
        p = self.selected()
        out = self.query_one("#prompt-text", Static)
        if p is None or self.account is None:
            out.update("")
            return
        custom = self.custom.get(p.name)
        text = Text()
        if custom:
            text.append(f"{self.account}'s prompt for {p.name}\n", style="bold")
            text.append(custom.system_prompt)
        else:
            text.append(f"{self.account} uses the default prompt of {p.name}\n", style="bold")
            text.append(p.system_prompt, style="dim")
        out.update(text)

    # --- actions ------------------------------------------------------------------------------
    def action_choose_account(self) -> None:
        self.query_one("#prompts-account", Select).focus()

    def action_edit(self) -> None:
        p, account = self.selected(), self.account
        if p is None or account is None:
            self.notify("Choose an account first.", severity="warning")
            return
        custom = self.custom.get(p.name)
        name = p.name

        def save(values: dict[str, Any], form: FormModal) -> None:
            prompt = values["prompt"].strip()
            if not prompt:
                form.failed("An empty prompt is not allowed; reset (d) goes back to the default.", "prompt")
                return
            self.alveare.set_custom_prompt(account, name, prompt, done=form.closing(self._saved), failed=form.failed)

        self.app.push_screen(
            FormModal(
                f"{account}: system prompt for {name}",
                [Field("prompt", "System prompt", (custom or p).system_prompt, kind="textarea", param="system_prompt")],
                note="Replaces the default prompt for this account's requests. Ctrl+S saves.",
                save=save,
            )
        )

    def _saved(self, prompt: CustomPrompt) -> None:
        self.custom[prompt.specialist] = prompt
        self.notify(f"Saved the custom prompt for {prompt.specialist}: the next request uses it.")
        self._redraw()

    def action_reset(self) -> None:
        p, account = self.selected(), self.account
        if p is None or account is None:
            return
        if p.name not in self.custom:
            self.notify(f"{account} already uses the default prompt of {p.name}.")
            return
        name = p.name

        def reset(yes: bool | None) -> None:
            if yes:
                self.alveare.reset_custom_prompt(account, name, done=lambda _: self._reset_done(name))

        self.app.push_screen(
            ConfirmModal(
                "Reset custom prompt",
                f"Delete {account}'s custom prompt for {name} and use the default again?",
                yes="Reset",
            ),
            reset,
        )

    def _reset_done(self, name: str) -> None:
        self.custom.pop(name, None)
        self.notify(f"{name} uses the default prompt again.")
        self._redraw()
