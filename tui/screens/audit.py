"""Audit: the admin actions, newest first (who, what, when), and whether the hash chain holds."""

from __future__ import annotations

import msgspec
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from appliance.store import AuditEntry, AuditPage, AuditVerification
from tui.format import first_line, when
from tui.screens.base import View, reset_table

# Rows fetched at a time: the newest on showing the tab, then older ones on asking.
PAGE = 100
# From this width on, the table shows the full time and actor, and a Change column.
WIDE = 110
TARGET_WIDTH = 30


def change_text(entry: AuditEntry) -> str:
    return msgspec.json.encode(entry.change).decode()


class AuditView(View):
    TITLE = "Audit"
    KEY = "7"
    HELP = "Admin actions, newest first: who, what and when; the hash chain checked"
    BINDINGS = [
        Binding("m", "more", "Older rows"),
        Binding("v", "verify", "Verify chain"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[AuditEntry] = []
        self.next_before: int | None = None
        self.verification: AuditVerification | None = None
        self._drawn_for = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="audit-chain")
        table: DataTable = DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="audit-detail")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.alveare.audit(PAGE, None, done=self.show_page)
        self.alveare.verify_audit(done=self.show_verification)

    # --- what the back end answers ---------------------------------------------------------------
    def show_page(self, page: AuditPage) -> None:
        self.entries = page.data
        self.next_before = page.next_before
        self._redraw()

    def show_older(self, page: AuditPage) -> None:
        known = {e.id for e in self.entries}
        self.entries = self.entries + [e for e in page.data if e.id not in known]
        self.next_before = page.next_before
        self._redraw()

    def show_verification(self, result: AuditVerification) -> None:
        self.verification = result
        line = Text()
        if result.ok:
            line.append("✓ chain holds", style="bold green")
            line.append(f" · {result.rows} rows · newest hash {result.head[:16]}…")
        else:
            line.append(f"✗ chain breaks at row {result.bad_row}", style="bold red")
            line.append(f": {result.problem}")
        self.query_one("#audit-chain", Static).update(line)
        self._redraw()

    # --- drawing ------------------------------------------------------------------------------------
    def on_resize(self) -> None:
        if self.app.size.width != self._drawn_for:
            self._redraw()

    def _redraw(self) -> None:
        """Wide terminals get the full time and a Change column; narrow ones show the change of the
        highlighted row below the table only."""
        width = self.app.size.width
        wide = width >= WIDE
        table = self.query_one("#audit-table", DataTable)
        row = table.cursor_row
        labels = ("#", "When (UTC)", "Who", "Action", "Target")
        # The change is cut to the terminal's width: a new width needs new columns.
        reset_table(table, (*labels, "Change") if wide else labels, fresh=width != self._drawn_for)
        self._drawn_for = width
        bad = self.verification.bad_row if self.verification and not self.verification.ok else None
        room = self._change_room()
        for e in self.entries:
            style = "bold red" if e.id == bad else ""
            # Text, not str: a DataTable reads a str as markup, and a change's JSON has brackets.
            cells = [
                Text(str(e.id), style=style or "dim", justify="right"),
                Text(when(e.at) if wide else when(e.at)[5:]),
                Text(e.actor if wide else first_line(e.actor, 12)),
                Text(e.action, style=style or "bold"),
                Text(first_line(e.target, TARGET_WIDTH if wide else 18)),
            ]
            if wide:
                cells.append(Text(first_line(change_text(e), room)))
            table.add_row(*cells, key=str(e.id))
        # An empty log is said in the title, not in a row: a cell's width would stay with its column.
        more = " · m: older rows" if self.next_before is not None else ""
        shown = f"{len(self.entries)} shown{more}" if self.entries else "none recorded yet"
        table.border_title = f"Admin actions ({shown})"
        if self.entries:
            table.move_cursor(row=min(row, len(self.entries) - 1))
        self._show_detail()

    def _change_room(self) -> int:
        """What the other columns leave of the terminal's width for the change: their widest cells,
        each cell's padding (2), the table's border (2) and its scroll bar (2)."""
        widths = [
            max([len("#"), *(len(str(e.id)) for e in self.entries)]),
            len("YYYY-MM-DD HH:MM"),
            max([len("Who"), *(len(e.actor) for e in self.entries)]),
            max([len("Action"), *(len(e.action) for e in self.entries)]),
            max([len("Target"), *(min(len(e.target), TARGET_WIDTH) for e in self.entries)]),
        ]
        return max(16, self.app.size.width - sum(widths) - 2 * (len(widths) + 1) - 4)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "audit-table":
            self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted row in full: its change, and the hashes that chain it."""
        detail = self.query_one("#audit-detail", Static)
        table = self.query_one("#audit-table", DataTable)
        if not self.entries or not 0 <= table.cursor_row < len(self.entries):
            detail.update("")
            return
        e = self.entries[table.cursor_row]
        text = Text()
        text.append(f"#{e.id} {e.action} {e.target}", style="bold")
        text.append(f" by {e.actor} at {e.at}\n")
        text.append(change_text(e) + "\n")
        text.append(f"hash    {e.hash}\nfollows {e.prev_hash}", style="dim")
        detail.update(text)

    # --- actions ------------------------------------------------------------------------------
    def action_more(self) -> None:
        if self.next_before is None:
            self.notify("These are all the rows: the first admin action is listed.")
            return
        self.alveare.audit(PAGE, self.next_before, done=self.show_older)

    def action_verify(self) -> None:
        self.alveare.verify_audit(done=self._verified)

    def _verified(self, result: AuditVerification) -> None:
        self.show_verification(result)
        if result.ok:
            self.notify(f"The chain holds: {result.rows} rows.", title="Audit log")
        else:
            self.notify(f"Row {result.bad_row}: {result.problem}.", title="Audit log tampered", severity="error")
