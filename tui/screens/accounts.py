"""Accounts and plans: period usage against the plan, alert state, caps; plan limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.store import Account, AccountOverview, BillingPlan
from tui.format import alert_text, first_line, human_count, money, number, plural, usage_bar, when
from tui.screens.base import View, reset_table
from tui.screens.modals import ConfirmModal, Field, FormModal

PLAN_FIELDS = [
    ("requests_per_minute", "Requests/min", "int", "per key"),
    ("requests_per_month", "Requests/month", "int", "per account, then overage"),
    ("tokens_per_minute", "Tokens/min", "int", "per key"),
    ("specialists_allowed", "Specialists", "int", "how many an account may use"),
    ("custom_prompts", "Custom prompts", "bool", ""),
    ("overage_per_1k_requests", "Overage/1k req", "float", "price per 1,000 past quota"),
    ("monthly_price", "Monthly price", "float", ""),
    ("share_weight", "Share weight", "int", "fair share of the hive (1-100)"),
]

# From this width on, the accounts table shows its extra columns.
WIDE = 120


class AccountsView(View):
    TITLE = "Accounts"
    KEY = "2"
    HELP = "Accounts on plans, their usage this period, caps; plan limits"
    BINDINGS = [
        Binding("n", "new_account", "New account"),
        Binding("p", "change_plan", "Change plan"),
        Binding("c", "set_cap", "Set cap"),
        Binding("x", "clear_cap", "Clear cap"),
        Binding("e", "edit_plan", "Edit plan"),
        # Last of the shown ones: at 80 columns the footer cuts it, and F1 and Ctrl+P still list it.
        Binding("s", "set_specialists", "Specialists"),
        Binding("P", "new_plan", "New plan", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.overviews: list[AccountOverview] = []
        self.plans: list[BillingPlan] = []
        self._wide = False
        self._select: str | None = None  # an account to put the cursor on once it is listed

    def compose(self) -> ComposeResult:
        yield Static("", id="accounts-title", classes="section")
        table: DataTable = DataTable(id="accounts-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("Plans", classes="section")
        plans: DataTable = DataTable(id="plans-table", cursor_type="row", zebra_stripes=True)
        for label in ("Plan", "Req/min", "Req/month", "Tok/min", "Specs", "Custom", "Over/1k", "Price", "Weight"):
            plans.add_column(label, key=label)
        yield plans

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.accounts(self.alveare.period, done=self.show_accounts)
        self.alveare.plans(done=self.show_plans)

    def show_accounts(self, overviews: list[AccountOverview]) -> None:
        self.overviews = overviews
        self.query_one("#accounts-title", Static).update(
            f"Accounts · period {self.alveare.period} · {plural(len(overviews), 'account')}"
        )
        self._redraw_accounts()

    def on_resize(self) -> None:
        # The terminal's width picks the columns (known before layout, so the first draw is final).
        if (self.app.size.width >= WIDE) != self._wide:
            self._redraw_accounts()

    def _redraw_accounts(self) -> None:
        """Narrow terminals get the essential columns; wide ones also tokens, overage, spending, created."""
        self._wide = wide = self.app.size.width >= WIDE
        table = self.query_one("#accounts-table", DataTable)
        row = table.cursor_row
        columns = ["Account", "Plan", "Requests", "Used", "Alert", "Cap", "Keys"]
        if wide:
            columns[5:5] = ["Tokens", "Overage", "Spent"]
            columns += ["Specialists", "Created"]
        reset_table(table, columns)
        for o in self.overviews:
            u = o.usage
            cells: dict[str, object] = {
                "Account": o.account.name if wide else first_line(o.account.name, 18),
                "Plan": o.account.plan,
                "Requests": Text(f"{number(u.requests_used)} / {human_count(u.requests_limit)}", justify="right"),
                "Used": usage_bar(u.requests_used, u.requests_limit, width=10 if wide else 4),
                "Alert": alert_text(o.alert_level),
                "Tokens": Text(number(u.tokens_used), justify="right"),
                "Overage": Text(number(u.overage_requests), justify="right"),
                "Spent": Text(money(u.spending), justify="right"),
                "Cap": Text(
                    "none" if o.account.spending_cap is None else money(o.account.spending_cap), justify="right"
                ),
                "Keys": Text(str(o.active_keys), justify="right"),
                "Specialists": ",".join(o.account.specialists) if o.account.specialists else "default",
                "Created": when(o.account.created_at),
            }
            table.add_row(*(cells[c] for c in columns), key=o.account.name)
        names = [o.account.name for o in self.overviews]
        if self._select in names:
            row, self._select = names.index(self._select), None
        if self.overviews:
            table.move_cursor(row=min(max(row, 0), len(self.overviews) - 1))

    def show_plans(self, plans: list[BillingPlan]) -> None:
        self.plans = plans
        table = self.query_one("#plans-table", DataTable)
        row = table.cursor_row
        table.clear()
        for p in plans:
            table.add_row(
                p.name,
                *(
                    Text(v, justify="right")
                    for v in (
                        number(p.requests_per_minute),
                        number(p.requests_per_month),
                        number(p.tokens_per_minute),
                        str(p.specialists_allowed),
                        "yes" if p.custom_prompts else "no",
                        f"{p.overage_per_1k_requests:.2f}",
                        f"{p.monthly_price:.2f}",
                        str(p.share_weight),
                    )
                ),
                key=p.name,
            )
        if plans:
            table.move_cursor(row=min(row, len(plans) - 1))

    # --- helpers ----------------------------------------------------------------------------
    def selected(self) -> AccountOverview | None:
        table = self.query_one("#accounts-table", DataTable)
        if not self.overviews or table.cursor_row < 0:
            self.notify("Create an account first (n).", severity="warning")
            return None
        return self.overviews[min(table.cursor_row, len(self.overviews) - 1)]

    def _created(self, account: Account) -> None:
        self._select = account.name
        self._changed(f"Created account {account.name} on the {account.plan} plan.")

    def _changed(self, message: str) -> None:
        self.notify(message)
        self.reload()

    # --- actions ------------------------------------------------------------------------------
    def action_new_account(self) -> None:
        plans = [p.name for p in self.plans] or ["starter"]

        def create(values: dict[str, Any], form: FormModal) -> None:
            self.alveare.create_account(
                values["name"], values["plan"], done=form.closing(self._created), failed=form.failed
            )

        self.app.push_screen(
            FormModal(
                "New account",
                [
                    Field("name", "Name", placeholder="e.g. acme-support"),
                    Field("plan", "Plan", "starter" if "starter" in plans else plans[0], kind="select", options=plans),
                ],
                submit="Create",
                save=create,
            )
        )

    def action_change_plan(self) -> None:
        o = self.selected()
        if o is None:
            return
        name = o.account.name

        def change(values: dict[str, Any], form: FormModal) -> None:
            if values["plan"] == o.account.plan:
                form.close()
                return
            self.alveare.set_account_plan(
                name,
                values["plan"],
                done=form.closing(lambda a: self._changed(f"Account {a.name} is now on the {a.plan} plan.")),
                failed=form.failed,
            )

        self.app.push_screen(
            FormModal(
                f"Change the plan of {name}",
                [Field("plan", "Plan", o.account.plan, kind="select", options=[p.name for p in self.plans])],
                submit="Change",
                save=change,
            )
        )

    def action_set_cap(self) -> None:
        o = self.selected()
        if o is None:
            return
        name = o.account.name

        def set_cap(values: dict[str, Any], form: FormModal) -> None:
            cap = values["cap"]
            if cap is not None and cap < 0:
                form.failed("A spending cap cannot be negative.", "cap")
                return
            self.alveare.set_spending_cap(name, cap, done=form.closing(self._cap_changed), failed=form.failed)

        self.app.push_screen(
            FormModal(
                f"Spending cap for {name}",
                [
                    Field(
                        "cap",
                        "Cap per period",
                        o.account.spending_cap,
                        kind="optional_float",
                        placeholder="empty: no cap",
                        help="A hard limit on overage spending; at the cap requests get 429 until the next "
                        "period. 0 stops at the quota. Empty clears it.",
                        param="spending_cap",
                    )
                ],
                submit="Set cap",
                save=set_cap,
            )
        )

    def action_set_specialists(self) -> None:
        o = self.selected()
        if o is None:
            return
        name = o.account.name
        plan = next((p for p in self.plans if p.name == o.account.plan), None)
        allowed = f"at most {plan.specialists_allowed}, " if plan else ""

        def choose(values: dict[str, Any], form: FormModal) -> None:
            text = values["specialists"].strip()
            names = None if text.lower() in ("", "default") else [n.strip() for n in text.split(",") if n.strip()]
            self.alveare.set_account_specialists(
                name, names, done=form.closing(self._specialists_changed), failed=form.failed
            )

        self.app.push_screen(
            FormModal(
                f"Specialists for {name}",
                [
                    Field(
                        "specialists",
                        "Specialists",
                        ",".join(o.account.specialists or []),
                        kind="optional_text",
                        placeholder="default: the plan's first ones",
                        help=f"Comma-separated names ({allowed}e.g. classify,summarise,qa); empty: the plan's "
                        "default set.",
                    )
                ],
                submit="Save",
                save=choose,
            )
        )

    def _specialists_changed(self, account: Account) -> None:
        chosen = ", ".join(account.specialists) if account.specialists else "the plan's default set"
        self._changed(f"Account {account.name} may use: {chosen}.")

    def _cap_changed(self, account: Account) -> None:
        if account.spending_cap is None:
            self._changed(f"Account {account.name} has no spending cap now.")
        else:
            self._changed(f"Account {account.name} now has a spending cap of {money(account.spending_cap)} per period.")

    def action_clear_cap(self) -> None:
        o = self.selected()
        if o is None:
            return
        if o.account.spending_cap is None:
            self.notify(f"Account {o.account.name} has no spending cap.")
            return
        name = o.account.name

        def clear(yes: bool | None) -> None:
            if yes:
                self.alveare.set_spending_cap(name, None, done=self._cap_changed)

        self.app.push_screen(
            ConfirmModal(
                "Clear spending cap",
                f"Remove the spending cap of {money(o.account.spending_cap)} from {name}? "
                "Overage will then be billed without a limit.",
                yes="Clear cap",
            ),
            clear,
        )

    def _plan_form(
        self, title: str, plan: BillingPlan, *, new: bool, save: Callable[[dict[str, Any], FormModal], object]
    ) -> FormModal:
        fields = [Field("name", "Name", "" if new else plan.name, placeholder="new plan name")] if new else []
        for name, label, kind, hint in PLAN_FIELDS:
            fields.append(Field(name, label, getattr(plan, name), kind=kind, help=hint))  # type: ignore[arg-type]
        note = f"Starts from the {plan.name} plan's values."
        if not new:
            note = "Changes apply to every account on this plan at once."
        return FormModal(title, fields, submit="Create" if new else "Save", note=note, save=save)

    def _plan_under_cursor(self) -> BillingPlan | None:
        plans_table = self.query_one("#plans-table", DataTable)
        accounts_table = self.query_one("#accounts-table", DataTable)
        if not self.plans:
            return None
        if accounts_table.has_focus and self.overviews:
            name = self.overviews[min(accounts_table.cursor_row, len(self.overviews) - 1)].account.plan
            return next((p for p in self.plans if p.name == name), None)
        return self.plans[min(max(plans_table.cursor_row, 0), len(self.plans) - 1)]

    def action_edit_plan(self) -> None:
        plan = self._plan_under_cursor()
        if plan is None:
            return
        name = plan.name

        def save(values: dict[str, Any], form: FormModal) -> None:
            self.alveare.set_plan(
                name,
                **values,
                done=form.closing(lambda p: self._changed(f"Saved the {p.name} plan.")),
                failed=form.failed,
            )

        self.app.push_screen(self._plan_form(f"Edit the {name} plan", plan, new=False, save=save))

    def action_new_plan(self) -> None:
        plan = self._plan_under_cursor()
        if plan is None:
            return

        def create(values: dict[str, Any], form: FormModal) -> None:
            name = values.pop("name")
            if any(p.name == name for p in self.plans):
                form.failed(f"A plan called {name} exists; edit it with e.", "name")
                return
            self.alveare.set_plan(
                name,
                **values,
                done=form.closing(lambda p: self._changed(f"Created the {p.name} plan.")),
                failed=form.failed,
            )

        self.app.push_screen(self._plan_form("New plan", plan, new=True, save=create))
