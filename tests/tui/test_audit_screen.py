"""The Audit screen on a LocalAdmin (no server): the admin actions newest first, the chain's verdict,
a tampered row named and marked, a change made in the TUI listed, and older rows on asking."""

from __future__ import annotations

import sqlite3

import pytest
from pilot_helpers import notifications, press, settle, table_rows, text_of
from textual.widgets import DataTable

from appliance.admin.local import LocalAdmin
from tui.app import AlveareApp
from tui.screens.audit import PAGE

pytestmark = pytest.mark.anyio
SIZE = (160, 40)


def make_app(admin: LocalAdmin) -> AlveareApp:
    return AlveareApp(admin, poll_interval=None)


async def test_lists_admin_actions_newest_first_and_the_chain_holds(seeded: LocalAdmin) -> None:
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "7")
        rows = table_rows(app, "#audit-table")
        actions = [r[3] for r in rows]
        # The seed's admin actions, newest first: its last is the solo plan's new monthly requests.
        assert actions[0] == "plan.update" and rows[0][4] == "solo"
        assert '"requests_per_month":[10000,200]' in rows[0][5]
        assert actions[-4:] == ["account.create"] * 4 and rows[-1][4] == "acme-support"
        assert actions.count("key.create") == 5 and actions.count("key.revoke") == 1
        assert {r[2] for r in rows} == {"cli-local"}
        chain = text_of(app, "#audit-chain")
        assert chain.startswith("✓ chain holds") and f"{len(rows)} rows" in chain
        # The highlighted row in full: its change and its hashes.
        detail = text_of(app, "#audit-detail")
        assert "plan.update solo by cli-local" in detail and "hash " in detail and "follows " in detail
        await press(pilot, "v")
        assert f"The chain holds: {len(rows)} rows." in notifications(app)


async def test_a_tampered_row_is_named_and_marked(seeded: LocalAdmin) -> None:
    conn = sqlite3.connect(seeded.store.path)
    conn.execute("DROP TRIGGER audit_log_no_update")  # what tampering takes
    conn.execute("""UPDATE audit_log SET change = '{"plan":"scale"}' WHERE id = 2""")
    conn.commit()
    conn.close()
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "7")
        assert text_of(app, "#audit-chain").startswith("✗ chain breaks at row 2: its contents do not match")
        table = app.query_one("#audit-table", DataTable)
        marked = table.get_row("2")
        assert marked[3].style == "bold red"  # type: ignore[union-attr]
        await press(pilot, "v")
        assert any(m.startswith("Row 2: its contents do not match its hash") for m in notifications(app))


async def test_a_change_made_in_the_tui_is_listed(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3", "n", "ctrl+s")  # a new live key for acme
        await press(pilot, "escape", "7")
        top = table_rows(app, "#audit-table")[0]
        assert top[3] == "key.create" and top[4].startswith("alv_live_")
        assert '"account":"acme"' in top[5] and '"admin":false' in top[5]


async def test_older_rows_on_asking(admin: LocalAdmin) -> None:
    admin.create_account("acme", "scale")
    for cap in range(PAGE + 5):
        admin.set_spending_cap("acme", float(cap))
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "7")
        assert len(table_rows(app, "#audit-table")) == PAGE
        await press(pilot, "m")
        rows = table_rows(app, "#audit-table")
        assert len(rows) == PAGE + 6 and rows[-1][3] == "account.create"
        assert [int(r[0]) for r in rows] == list(range(PAGE + 6, 0, -1))
        await press(pilot, "m")
        assert "These are all the rows" in notifications(app)[-1]


async def test_an_empty_log_says_so(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "7")
        assert table_rows(app, "#audit-table") == []
        assert app.query_one("#audit-table", DataTable).border_title == "Admin actions (none recorded yet)"
        assert text_of(app, "#audit-chain").startswith("✓ chain holds · 0 rows")


async def test_the_table_fits_the_terminal_after_a_resize(seeded: LocalAdmin) -> None:
    """The change is cut to the width there is; a narrower terminal gets the table cut anew, not a
    horizontal scroll bar left from the wider one."""
    app = AlveareApp(seeded, poll_interval=None)
    async with app.run_test(size=(200, 40)) as pilot:
        await press(pilot, "7")
        table = app.query_one("#audit-table", DataTable)
        assert '{"system_prompt":[null,{"chars":70,' in table_rows(app, "#audit-table")[1][5]
        for width in (130, 90, 160):
            await pilot.resize_terminal(width, 40)
            await settle(pilot)
            assert table.virtual_size.width <= table.scrollable_content_region.width, width
            assert len(table_rows(app, "#audit-table")[0]) == (6 if width >= 110 else 5)
