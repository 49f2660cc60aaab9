"""Usage: per account, key and specialist for a period, by day with a chart; alert events."""

from __future__ import annotations

from calendar import monthrange

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Select, Sparkline, Static

from appliance.store import AccountOverview, AlertEvent, UsageBreakdown, UsageRow
from tui.format import alert_text, first_line, fit_series, number, plural, shift_period, when
from tui.screens.base import View, reset_table

ALL = "*"
GROUPS = ("account", "key", "specialist", "day")


def _days(period: str) -> list[str]:
    """Every day (YYYY-MM-DD) of a period 'YYYY-MM'."""
    year, month = (int(x) for x in period.split("-"))
    return [f"{period}-{d:02d}" for d in range(1, monthrange(year, month)[1] + 1)]


class UsageView(View):
    TITLE = "Usage"
    KEY = "6"
    HELP = "Requests and tokens by account, key, specialist and day; alerts"
    BINDINGS = [
        Binding("g", "group", "Group by"),
        Binding("left_square_bracket", "period(-1)", "Prev month"),
        Binding("right_square_bracket", "period(1)", "Next month"),
        Binding("a", "choose_account", "Account", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.group = "account"
        self.period_offset = 0
        self.breakdown: UsageBreakdown | None = None
        self.alerts: list[AlertEvent] = []
        self.accounts: list[str] = []
        self._drawn_for = 0

    @property
    def period(self) -> str:
        return shift_period(self.alveare.period, self.period_offset)

    @property
    def account(self) -> str | None:
        value = self.query_one("#usage-account", Select).value
        return None if value in (ALL, Select.NULL) else str(value)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Label("Account", classes="toolbar-label")
            yield Select([("All accounts", ALL)], value=ALL, allow_blank=False, id="usage-account")
            yield Static("", id="usage-period", classes="toolbar-info")
        yield Static("", id="usage-summary")
        with Vertical(id="usage-chart") as chart:
            chart.border_title = "Requests per day"
            yield Sparkline([], id="usage-spark", summary_function=max)
            yield Static("", id="usage-axis", classes="muted")
        with Horizontal(id="usage-lower"):
            table: DataTable = DataTable(id="usage-table", cursor_type="row", zebra_stripes=True)
            yield table
            alerts: DataTable = DataTable(id="alerts-table", cursor_type="row")
            alerts.border_title = "Alerts"
            alerts.add_column("When", key="when")
            alerts.add_column("Account", key="account")
            alerts.add_column("At", key="at")
            yield alerts

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.accounts(self.period, done=self.show_accounts)
        self.alveare.usage(self.account, self.period, done=self.show_usage)
        self.alveare.alerts(self.account, self.period, done=self.show_alerts)

    def show_accounts(self, overviews: list[AccountOverview]) -> None:
        names = [o.account.name for o in overviews]
        if names != self.accounts:
            self.accounts = names
            select = self.query_one("#usage-account", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([("All accounts", ALL), *((n, n) for n in names)])
                select.value = current if current in names else ALL
        account = self.account
        summary = Text()
        if account is None:
            used = sum(o.usage.requests_used for o in overviews)
            tokens = sum(o.usage.tokens_used for o in overviews)
            spending = sum(o.usage.spending for o in overviews)
            summary.append(
                f"{plural(len(overviews), 'account')} · {plural(used, 'request')} · {plural(tokens, 'token')}"
            )
            summary.append(f" · overage spending {spending:,.2f}")
        else:
            o = next((o for o in overviews if o.account.name == account), None)
            if o is not None:
                u = o.usage
                of_limit = f"{number(u.requests_used)} of {number(u.requests_limit)}"
                summary.append(f"{account} ({u.plan}) · {of_limit} requests ")
                summary.append_text(alert_text(o.alert_level))
                summary.append(f" · {number(u.tokens_used)} tokens · overage {number(u.overage_requests)}")
                cap = "no cap" if u.spending_cap is None else f"cap {u.spending_cap:,.2f}"
                summary.append(f" · spent {u.spending:,.2f} ({cap})")
                summary.append(f" · {u.test_requests} test, {u.failed_requests} failed")
        self.query_one("#usage-summary", Static).update(summary)

    @on(Select.Changed, "#usage-account")
    def _account_changed(self) -> None:
        self.reload()

    def show_usage(self, usage: UsageBreakdown) -> None:
        self.breakdown = usage
        self.query_one("#usage-period", Static).update(f"period {usage.period}  ([ ] change)")
        days = _days(usage.period)
        per_day = {d.day: d.requests for d in usage.by_day}
        series = [float(per_day.get(day, 0)) for day in days]
        self._series = series
        self._draw_chart()
        peak = max(series, default=0)
        total = sum(series)
        axis = f"{days[0][5:]} … {days[-1][5:]} · peak {number(int(peak))}/day · {number(int(total))} in all"
        self.query_one("#usage-axis", Static).update(axis if days else "")
        self._render_table()

    def on_resize(self) -> None:
        # Sizes come from the terminal's width (known before layout), so the first draw is final.
        if self.app.size.width != self._drawn_for:
            self._draw_chart()
            if self.breakdown is not None:
                self._render_table()
                self.show_alerts(self.alerts)

    def _draw_chart(self) -> None:
        self._drawn_for = self.app.size.width
        spark = self.query_one("#usage-spark", Sparkline)
        # The chart's inner width: the terminal less its border and padding.
        data, width = fit_series(getattr(self, "_series", []), self.app.size.width - 4)
        spark.data = data
        spark.styles.width = width

    @property
    def narrow(self) -> bool:
        return self.app.size.width < 120

    def _render_table(self) -> None:
        table = self.query_one("#usage-table", DataTable)
        table.border_title = f"By {self.group} (g changes)"
        labels = ("Reqs", "Tokens", "Fail", "Test") if self.narrow else ("Requests", "Tokens", "Failed", "Test")
        reset_table(table, (self.group.title(), *labels))
        usage = self.breakdown
        if usage is None:
            return
        if self.group == "day":
            rows = [UsageRow(d.day, d.requests, d.tokens, d.failed, 0) for d in usage.by_day]
        else:
            rows = {"account": usage.by_account, "key": usage.by_key, "specialist": usage.by_specialist}[self.group]
        for r in rows:
            table.add_row(
                first_line(r.name, 14) if self.narrow else r.name,
                *(Text(number(v), justify="right") for v in (r.requests, r.tokens, r.failed, r.test)),
            )
        if not rows:
            table.add_row(Text("no requests in this period", style="dim"), "", "", "", "")

    def show_alerts(self, alerts: list[AlertEvent]) -> None:
        self.alerts = alerts
        table = self.query_one("#alerts-table", DataTable)
        table.clear()
        for a in alerts:
            stamp = when(a.created_at)
            table.add_row(stamp[5:10] if self.narrow else stamp, a.account, alert_text(a.threshold))
        table.border_title = f"Alerts ({len(alerts)})"

    # --- actions ------------------------------------------------------------------------------
    def action_group(self) -> None:
        self.group = GROUPS[(GROUPS.index(self.group) + 1) % len(GROUPS)]
        self._render_table()

    def action_period(self, step: int) -> None:
        if self.period_offset + step > 0:
            self.notify("That period has not started yet.")
            return
        self.period_offset += step
        self.reload()

    def action_choose_account(self) -> None:
        self.query_one("#usage-account", Select).focus()
