"""The TUI on a LocalAdmin over a temp data dir (no server): every management screen, driven with Pilot."""

from __future__ import annotations

import pytest
from pilot_helpers import notifications, press, settle, table_rows, text_of
from textual.widgets import DataTable, Input, Select, Switch, TextArea

from appliance.admin.local import LocalAdmin
from tui.app import AlveareApp
from tui.screens.modals import ConfirmModal, FormModal, HelpModal, NewKeyModal

pytestmark = pytest.mark.anyio
SIZE = (100, 30)


def make_app(admin: LocalAdmin, **kwargs) -> AlveareApp:
    return AlveareApp(admin, poll_interval=None, **kwargs)


async def test_hive_says_the_server_is_down(admin: LocalAdmin) -> None:
    app = AlveareApp(admin, poll_interval=60)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        state = text_of(app, "#hive-state")
        assert "Server down" in state
        assert "No Alveare server is running" in state
        assert "Retrying every 60 s" in state
        assert app.sub_title == "server down · working on the data dir"


async def test_create_copy_and_revoke_a_key(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3", "n")
        # All accounts are listed, so the TUI asks which account the key is for.
        assert isinstance(app.screen, FormModal)
        assert app.screen.query_one("#field-account", Select).value == "acme"
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, NewKeyModal)
        key = text_of(app, "#the-key")
        assert key.startswith("alv_live_") and len(key) == 48
        assert "only time the key is shown" in text_of(app, ".warning")
        await pilot.press("c")
        assert app.clipboard == key
        await press(pilot, "escape")
        [info] = admin.keys("acme")
        assert key.startswith(info.prefix)
        rows = table_rows(app, "#keys-table")
        assert rows[0][0] == info.prefix and rows[0][1] == "acme" and rows[0][2] == "live"
        # The full key is never on the screen again.
        assert all(key not in cell for row in rows for cell in row)

        await press(pilot, "d")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "y")
        assert admin.keys("acme")[0].revoked_at is not None
        assert table_rows(app, "#keys-table") == []  # revoked keys are hidden until v
        await pilot.press("v")
        assert "revoked" in table_rows(app, "#keys-table")[0][6]


async def test_revoke_can_be_cancelled(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    admin.create_key("acme", test=True)
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3")
        assert table_rows(app, "#keys-table")[0][2] == "test"
        await press(pilot, "delete", "n")
        assert admin.keys("acme")[0].revoked_at is None


async def test_rotate_creates_then_revokes_after_confirmation(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    old = admin.create_key("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3", "o")
        assert isinstance(app.screen, NewKeyModal)
        new_key = text_of(app, "#the-key")
        # The new key exists before the old one is touched.
        assert sum(k.revoked_at is None for k in admin.keys("acme")) == 2
        await press(pilot, "escape")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "y")
        keys = {k.prefix: k for k in admin.keys("acme")}
        assert keys[old.prefix].revoked_at is not None
        assert keys[new_key[:17]].revoked_at is None


async def test_the_five_key_limit_is_a_message(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    for _ in range(5):
        admin.create_key("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3")
        app.query_one("#keys-account", Select).value = "acme"
        await settle(pilot)
        app.query_one("#keys-table", DataTable).focus()
        await press(pilot, "n")
        assert not isinstance(app.screen, NewKeyModal)
        assert any("5 active keys" in m for m in notifications(app)), notifications(app)
        assert len([k for k in admin.keys("acme") if k.revoked_at is None]) == 5
        # Rotation at the limit says the same, and revokes nothing.
        await press(pilot, "o")
        assert not isinstance(app.screen, (NewKeyModal, ConfirmModal))
        assert len([k for k in admin.keys("acme") if k.revoked_at is None]) == 5


async def test_keys_filtered_by_account(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    admin.create_account("globex")
    admin.create_key("acme")
    admin.create_key("globex")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3")
        assert len(table_rows(app, "#keys-table")) == 2
        app.query_one("#keys-account", Select).value = "globex"
        await settle(pilot)
        rows = table_rows(app, "#keys-table")
        assert [r[1] for r in rows] == ["globex"]
        # A new test key goes to the chosen account.
        app.query_one("#keys-table", DataTable).focus()
        await press(pilot, "t")
        assert isinstance(app.screen, NewKeyModal)
        assert text_of(app, "#the-key").startswith("alv_test_")
        await pilot.press("escape")
        assert [k.test for k in admin.keys("globex")] == [False, True]


async def test_create_account_change_plan_and_caps(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2", "n")
        assert isinstance(app.screen, FormModal)
        app.screen.query_one("#field-name", Input).value = "newco"
        app.screen.query_one("#field-plan", Select).value = "solo"
        await press(pilot, "ctrl+s")
        [overview] = admin.accounts()
        assert (overview.account.name, overview.account.plan) == ("newco", "solo")
        assert table_rows(app, "#accounts-table")[0][:2] == ["newco", "solo"]

        await press(pilot, "p")
        app.screen.query_one("#field-plan", Select).value = "professional"
        await press(pilot, "ctrl+s")
        assert admin.accounts()[0].account.plan == "professional"
        assert table_rows(app, "#accounts-table")[0][1] == "professional"

        await press(pilot, "c")
        field = app.screen.query_one("#field-cap", Input)
        field.value = "12.5"
        field.focus()
        await press(pilot, "enter")
        assert admin.accounts()[0].account.spending_cap == 12.5
        assert table_rows(app, "#accounts-table")[0][5] == "12.50"

        await press(pilot, "x")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "y")
        assert admin.accounts()[0].account.spending_cap is None
        assert table_rows(app, "#accounts-table")[0][5] == "none"


async def test_bad_input_is_explained_in_the_form(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2", "n")
        form = app.screen
        # An existing name: the store refuses, the form stays with the reason and what was typed.
        form.query_one("#field-name", Input).value = "acme"
        form.query_one("#field-plan", Select).value = "solo"
        await press(pilot, "ctrl+s")
        assert app.screen is form and "acme" in text_of(app, "#form-error")
        assert form.query_one("#field-name", Input).value == "acme"
        assert form.query_one("#field-plan", Select).value == "solo"
        # An empty name never leaves the form.
        form.query_one("#field-name", Input).value = ""
        await press(pilot, "ctrl+s")
        assert app.screen is form and "must not be empty" in text_of(app, "#form-error")
        # Fixed, it saves and closes.
        form.query_one("#field-name", Input).value = "acme-two"
        await press(pilot, "ctrl+s")
        assert not isinstance(app.screen, FormModal)
        assert {o.account.name: o.account.plan for o in admin.accounts()} == {"acme": "starter", "acme-two": "solo"}


async def test_a_refused_plan_limit_keeps_the_dialog_and_every_value(admin: LocalAdmin) -> None:
    admin.create_account("acme", "starter")
    before = next(p for p in admin.plans() if p.name == "starter")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2", "e")
        form = app.screen
        assert isinstance(form, FormModal) and "starter" in form.form_title
        typed = {"requests_per_minute": "-5", "requests_per_month": "150000", "monthly_price": "9.5"}
        for name, value in typed.items():
            form.query_one(f"#field-{name}", Input).value = value
        form.query_one("#field-custom_prompts", Switch).value = True
        await press(pilot, "ctrl+s")
        # The store refuses the negative limit: the dialog stays, says why under the fields, marks
        # and focuses the field, and keeps everything typed. Nothing was saved.
        assert app.screen is form
        assert "requests_per_minute" in text_of(app, "#form-error")
        field = form.query_one("#field-requests_per_minute", Input)
        assert field.has_class("invalid") and field.has_focus
        assert {name: form.query_one(f"#field-{name}", Input).value for name in typed} == typed
        assert form.query_one("#field-custom_prompts", Switch).value is True
        assert next(p for p in admin.plans() if p.name == "starter") == before
        assert not notifications(app)
        # Fixed: saved, and the dialog closes.
        field.value = "30"
        await pilot.pause()
        assert not field.has_class("invalid")  # being fixed: no longer marked
        await press(pilot, "ctrl+s")
        assert not isinstance(app.screen, FormModal)
        starter = next(p for p in admin.plans() if p.name == "starter")
        assert (starter.requests_per_minute, starter.requests_per_month, starter.custom_prompts) == (30, 150_000, True)
        assert any("Saved the starter plan" in m for m in notifications(app))


async def test_a_refused_dialog_can_still_be_cancelled(admin: LocalAdmin) -> None:
    admin.create_account("acme", "starter")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2", "c")
        app.screen.query_one("#field-cap", Input).value = "-1"
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, FormModal) and "cannot be negative" in text_of(app, "#form-error")
        await press(pilot, "escape")
        assert not isinstance(app.screen, FormModal)
        assert admin.accounts()[0].account.spending_cap is None


async def test_edit_plan_limits(admin: LocalAdmin) -> None:
    admin.create_account("acme", "starter")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2")
        # e on the accounts table edits the selected account's plan.
        await press(pilot, "e")
        assert isinstance(app.screen, FormModal) and "starter" in app.screen.form_title
        app.screen.query_one("#field-requests_per_month", Input).value = "150000"
        await press(pilot, "ctrl+s")
        starter = next(p for p in admin.plans() if p.name == "starter")
        assert starter.requests_per_month == 150_000
        assert "150,000" in next(row for row in table_rows(app, "#plans-table") if row[0] == "starter")
        assert table_rows(app, "#accounts-table")[0][2] == "0 / 150K"

        # On the plans table, e edits the highlighted plan; a bad number stays in the form.
        app.query_one("#plans-table", DataTable).focus()
        await press(pilot, "e")
        assert "solo" in app.screen.form_title
        app.screen.query_one("#field-tokens_per_minute", Input).value = "lots"
        await press(pilot, "ctrl+s")
        assert "whole number" in text_of(app, "#form-error")
        field = app.screen.query_one("#field-tokens_per_minute", Input)
        assert field.has_class("invalid") and field.has_focus and field.value == "lots"
        await pilot.press("escape")


async def test_custom_prompt_edit_and_reset(admin: LocalAdmin) -> None:
    admin.create_account("acme", "professional")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "5")
        assert app.query_one("#prompts-account", Select).value == "acme"
        rows = table_rows(app, "#prompts-table")
        assert [r[0] for r in rows] == ["classify", "summarise", "extract", "qa", "chat", "code"]
        assert {r[1] for r in rows} == {"default"}
        await pilot.press("down")  # summarise
        await press(pilot, "e")
        area = app.screen.query_one("#field-prompt", TextArea)
        assert area.text.startswith("You are a careful summariser.")
        area.text = "Summarise as a haiku."
        await press(pilot, "ctrl+s")
        assert [(c.specialist, c.system_prompt) for c in admin.custom_prompts("acme")] == [
            ("summarise", "Summarise as a haiku.")
        ]
        assert table_rows(app, "#prompts-table")[1][1] == "custom"
        assert "Summarise as a haiku." in text_of(app, "#prompt-text")

        await press(pilot, "d", "y")
        assert admin.custom_prompts("acme") == []
        assert table_rows(app, "#prompts-table")[1][1] == "default"


async def test_custom_prompt_refused_on_a_plan_without_them(admin: LocalAdmin) -> None:
    admin.create_account("tiny", "solo")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "5")
        assert "no custom prompts" in text_of(app, "#prompts-note")
        await press(pilot, "e")
        app.screen.query_one("#field-prompt", TextArea).text = "Be brief."
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, FormModal)
        assert "no custom system prompts" in text_of(app, "#form-error")
        assert app.screen.query_one("#field-prompt", TextArea).text == "Be brief."
        assert admin.custom_prompts("tiny") == []


async def test_specialist_override_edit_and_reset(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "4")
        assert [r[0] for r in table_rows(app, "#spec-table")] == [
            "classify",
            "summarise",
            "extract",
            "qa",
            "chat",
            "code",
        ]
        await pilot.press("down", "down", "down")  # qa
        await press(pilot, "e")
        form = app.screen
        assert isinstance(form, FormModal) and form.form_title == "Edit qa"
        form.query_one("#field-system_prompt", TextArea).text = "Answer in one word."
        form.query_one("#field-max_tokens", Input).value = "32"
        await press(pilot, "ctrl+s")
        qa = next(p for p in admin.specialists() if p.name == "qa")
        assert qa.overridden and qa.system_prompt == "Answer in one word." and qa.max_tokens == 32
        assert qa.temperature == qa.default_temperature
        assert table_rows(app, "#spec-table")[3][0] == "qa *"
        detail = text_of(app, "#spec-info")
        assert "Answer in one word." in detail and "File default" in detail

        await press(pilot, "d", "y")
        qa = next(p for p in admin.specialists() if p.name == "qa")
        assert not qa.overridden and qa.system_prompt == qa.default_system_prompt
        assert table_rows(app, "#spec-table")[3][0] == "qa"


async def test_out_of_range_parameters_are_refused_with_a_message(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "4", "e")
        app.screen.query_one("#field-temperature", Input).value = "9"
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, FormModal) and "temperature" in text_of(app, "#form-error")
        temperature = app.screen.query_one("#field-temperature", Input)
        assert temperature.value == "9" and temperature.has_class("invalid")
        assert not any(p.overridden for p in admin.specialists())


async def test_try_it_offline_says_it_needs_the_server(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "4")
        await pilot.press("t")
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        assert "needs the running server" in text_of(app, "#try-stats")


async def test_usage_by_account_key_specialist_and_day(seeded: LocalAdmin) -> None:
    app = make_app(seeded, period="2026-03")
    async with app.run_test(size=(130, 36)) as pilot:  # wide enough for whole names
        await press(pilot, "6")
        usage = seeded.usage(None, "2026-03")
        rows = table_rows(app, "#usage-table")
        assert {r[0] for r in rows} == {r.name for r in usage.by_account}
        assert sum(int(r[1].replace(",", "")) for r in rows) == sum(r.requests for r in usage.by_account)
        assert "2026-03" in text_of(app, "#usage-period")
        assert "peak" in text_of(app, "#usage-axis")
        alerts = table_rows(app, "#alerts-table")
        assert [(a[1], a[2]) for a in alerts] == [("globex", "75%"), ("globex", "90%")]
        for group, expected in (("key", usage.by_key), ("specialist", usage.by_specialist)):
            await pilot.press("g")
            assert {r[0] for r in table_rows(app, "#usage-table")} == {r.name for r in expected}, group
        await pilot.press("g")
        assert len(table_rows(app, "#usage-table")) == len(usage.by_day)

        # One account, and the previous (empty) period.
        app.query_one("#usage-account", Select).value = "globex"
        await settle(pilot)
        assert "globex (solo)" in text_of(app, "#usage-summary")
        app.query_one("#usage-table", DataTable).focus()
        await press(pilot, "left_square_bracket")
        assert "2026-02" in text_of(app, "#usage-period")
        assert table_rows(app, "#alerts-table") == []


async def test_accounts_show_usage_against_the_limit_and_alert_state(seeded: LocalAdmin) -> None:
    app = make_app(seeded, period="2026-03")
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "2")
        rows = {r[0]: r for r in table_rows(app, "#accounts-table")}
        globex = next(o for o in seeded.accounts("2026-03") if o.account.name == "globex")
        assert rows["globex"][2] == f"{globex.usage.requests_used} / 200"
        assert rows["globex"][4] == f"{globex.alert_level}%"
        assert rows["umbrella"][4] == "ok"


async def test_help_lists_every_binding_and_the_palette_every_action(admin: LocalAdmin) -> None:
    app = make_app(admin)
    async with app.run_test(size=(100, 50)) as pilot:
        await press(pilot, "f1")
        assert isinstance(app.screen, HelpModal)
        shown = " ".join(desc for _, rows in app.screen.sections for _, desc in rows)
        table = app.action_table()
        for name, _, target, _ in table:
            description = name.split(": ", 1)[1] if target else None
            if description:
                assert description in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpModal)

        # The palette runs a screen's action: switches to Keys and opens the new-key flow's message.
        await press(pilot, "ctrl+p")
        await pilot.press(*"Keys: New test key")
        await pilot.pause(0.5)
        await press(pilot, "enter")
        assert app.query_one("#tabs").active == "keys"
        assert any("Create an account first" in m for m in notifications(app)), notifications(app)


async def test_enter_saves_the_new_key_dialog(admin: LocalAdmin) -> None:
    """The dialog has only the account to choose (already chosen): Enter creates the key."""
    admin.create_account("acme")
    app = make_app(admin)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "3", "n")
        assert isinstance(app.screen, FormModal)
        await press(pilot, "enter")
        assert isinstance(app.screen, NewKeyModal)
        assert len(admin.keys("acme")) == 1


async def test_choose_an_accounts_specialists(admin: LocalAdmin) -> None:
    admin.create_account("acme", "solo")
    app = make_app(admin)
    async with app.run_test(size=(130, 30)) as pilot:
        await press(pilot, "2", "s")
        assert isinstance(app.screen, FormModal)
        app.screen.query_one("#field-specialists", Input).value = "qa, alveare-chat"
        await press(pilot, "enter")
        [acme] = [o.account for o in admin.accounts() if o.account.name == "acme"]
        assert acme.specialists == ["qa", "chat"]
        assert any("qa, chat" in n for n in notifications(app))
        assert "qa,chat" in [cell for row in table_rows(app, "#accounts-table") for cell in row]
        # Over the plan's number, or an unknown name: a message in the dialog, nothing changed.
        await press(pilot, "s")
        app.screen.query_one("#field-specialists", Input).value = "qa,chat,code,classify"
        await press(pilot, "enter")
        assert isinstance(app.screen, FormModal) and "solo plan allows 3" in text_of(app, "#form-error")
        app.screen.query_one("#field-specialists", Input).value = "poetry"
        await press(pilot, "enter")
        assert isinstance(app.screen, FormModal) and "poetry" in text_of(app, "#form-error")
        [acme] = [o.account for o in admin.accounts() if o.account.name == "acme"]
        assert acme.specialists == ["qa", "chat"]
        # Empty goes back to the plan's default set.
        app.screen.query_one("#field-specialists", Input).value = ""
        await press(pilot, "enter")
        [acme] = [o.account for o in admin.accounts() if o.account.name == "acme"]
        assert acme.specialists is None
