"""The TUI against a real `alveare serve` on the embedded model, through the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from live import LiveServer, start_server
from pilot_helpers import press, settle, table_rows, text_of
from textual.widgets import DataTable, Input, Select, TextArea

from appliance.admin.reach import open_admin
from appliance.admin.remote import AdminClient
from tui.app import AlveareApp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SIZE = (120, 36)


@pytest.fixture
def online(server: LiveServer) -> Iterator[AdminClient]:
    backend = open_admin(server.data_dir, server.url, server.admin_key)
    assert backend.online
    try:
        yield backend  # type: ignore[misc]
    finally:
        backend.close()


def prompt_tokens(server: LiveServer, key: str, model: str) -> int:
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello there."}], max_tokens=1
    )
    assert reply.usage is not None
    return reply.usage.prompt_tokens


async def wait_for(pilot, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)


async def test_hive_shows_the_real_status(online: AdminClient) -> None:
    app = AlveareApp(online, poll_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "Server up" in text_of(app, "#hive-state"), 30)
        status = online.hive_status()
        assert f"Alveare {status.version}" in text_of(app, "#hive-state")
        assert status.model.name in text_of(app, "#box-model")
        assert status.model.device.upper() in text_of(app, "#box-device")
        assert "Tuning on: " in text_of(app, "#hive-state")  # a real server reports its tuning pieces
        assert f"/ {status.slots_total} busy" in text_of(app, "#box-slots")
        assert "hits" in text_of(app, "#box-cache")
        assert "last 10 min" in text_of(app, "#hive-window")
        assert app.sub_title == "server online"


async def test_custom_prompt_edited_in_the_tui_is_used_by_the_next_request(
    server: LiveServer, online: AdminClient
) -> None:
    key = server.new_key("tui-prompts", plan="professional")
    before = prompt_tokens(server, key, "summarise")
    app = AlveareApp(online, poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "5")
        app.query_one("#prompts-account", Select).value = "tui-prompts"
        await settle(pilot)
        app.query_one("#prompts-table", DataTable).focus()
        await pilot.press("down", "e")  # summarise
        await settle(pilot)
        long_prompt = "You summarise legal contracts for a busy general counsel. " * 20
        app.screen.query_one("#field-prompt", TextArea).text = long_prompt
        await press(pilot, "ctrl+s")
        assert table_rows(app, "#prompts-table")[1][1] == "custom"
    after = prompt_tokens(server, key, "summarise")
    assert after > before + 100, (before, after)
    # Other specialists of the account keep their default prompts.
    assert [c.specialist for c in online.custom_prompts("tui-prompts")] == ["summarise"]


async def test_specialist_prompt_edited_in_the_tui_is_used_by_the_next_request(
    server: LiveServer, online: AdminClient
) -> None:
    key = server.new_key("tui-specialists", plan="scale")
    before = prompt_tokens(server, key, "code")
    app = AlveareApp(online, poll_interval=None)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await press(pilot, "4")
            await pilot.press("down", "down", "down", "down", "down", "e")  # code, the last one
            await settle(pilot)
            assert app.screen.form_title == "Edit code"
            app.screen.query_one("#field-system_prompt", TextArea).text = "You write Python. " * 60
            await press(pilot, "ctrl+s")
            assert table_rows(app, "#spec-table")[-1][0] == "code *"
        after = prompt_tokens(server, key, "code")
        assert after > before + 100, (before, after)
    finally:
        online.reset_specialist("code")
    assert prompt_tokens(server, key, "code") == before


async def test_try_it_streams_a_real_answer(online: AdminClient) -> None:
    app = AlveareApp(online, poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "4")
        view = app.query_one("#view-specialists")
        pieces: list[str] = []
        original = view._event

        def counting(prompt, event, elapsed, stream_id=None):
            if event.text:
                pieces.append(event.text)
            original(prompt, event, elapsed, stream_id)

        view._event = counting
        await pilot.press("down", "down", "down", "down")  # chat
        await pilot.press("t")
        assert isinstance(app.focused, Input)
        await pilot.press(*"Name three colours.", "enter")
        await wait_for(pilot, lambda: "completion tokens" in text_of(app, "#try-stats"))
        stats = text_of(app, "#try-stats")
        answer = text_of(app, "#try-answer")
        assert answer.startswith("> Name three colours.")
        assert "".join(pieces).strip() and "".join(pieces) in answer
        assert len(pieces) > 1  # streamed in pieces, not all at once
        assert " ms" in stats and "first token" in stats
        prompt, completion = (int(stats.split(" prompt + ")[0]), int(stats.split(" + ")[1].split()[0]))
        assert prompt > 10 and completion >= len(pieces) - 1


async def test_an_offline_app_comes_online_when_the_server_answers(server: LiveServer) -> None:
    offline = open_admin(server.data_dir, "http://127.0.0.1:9")  # nothing listens there: the data dir
    assert not offline.online

    def reopen():
        return open_admin(server.data_dir, server.url, server.admin_key)

    app = AlveareApp(offline, poll_interval=0.5, reopen=reopen, probe=lambda: True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "Server up" in text_of(app, "#hive-state"), 30)
        assert app.backend.online and app.sub_title == "server online"
    app.backend.close()  # type: ignore[attr-defined]


async def test_server_stopping_is_shown_and_management_goes_on(tmp_path_factory: pytest.TempPathFactory) -> None:
    live = start_server(tmp_path_factory.mktemp("tui-stop"), "--slots", "1")
    try:
        url = live.url

        def reopen():
            return open_admin(live.data_dir, url, live.admin_key)

        app = AlveareApp(reopen(), poll_interval=0.5, reopen=reopen)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "Server up" in text_of(app, "#hive-state"), 30)
            live.stop()
            await wait_for(pilot, lambda: "Server down" in text_of(app, "#hive-state"), 30)
            # The poll shows "Server down" first, then switches to the data dir in the same worker.
            await wait_for(pilot, lambda: not app.backend.online, 30)
            assert app.sub_title == "server down · working on the data dir"
            # Accounts are still managed, now on the data dir.
            await press(pilot, "2", "n")
            app.screen.query_one("#field-name", Input).value = "made-offline"
            await press(pilot, "ctrl+s")
            assert "made-offline" in [r[0] for r in table_rows(app, "#accounts-table")]
        app.backend.close()  # type: ignore[attr-defined]
    finally:
        live.stop()


async def test_account_specialists_chosen_in_the_tui_apply_to_the_next_request(
    server: LiveServer, online: AdminClient
) -> None:
    key = server.new_key("tui-chosen", plan="solo")
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)
    assert "alveare-classify" in [m.id for m in client.models.list().data]
    app = AlveareApp(online, poll_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await press(pilot, "2")
        names = [r[0] for r in table_rows(app, "#accounts-table")]
        app.query_one("#accounts-table", DataTable).move_cursor(row=names.index("tui-chosen"))
        await press(pilot, "s")
        app.screen.query_one("#field-specialists", Input).value = "qa,chat"
        await press(pilot, "enter")
    assert sorted(m.id for m in client.models.list().data) == ["alveare-chat", "alveare-qa"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="classify", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert info.value.code == "specialist_not_enabled"


async def test_an_adapter_set_and_cleared_in_the_tui(online: AdminClient, tmp_path) -> None:
    import gguf

    from appliance.engine.engine import embedded_model_path
    from appliance.models.lora_file import architecture, random_pairs, write_adapter

    reader = gguf.GGUFReader(embedded_model_path())
    adapter = tmp_path / "code-lora.gguf"
    write_adapter(random_pairs(reader, 8), architecture(reader), 16.0, adapter)
    app = AlveareApp(online, poll_interval=None)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await press(pilot, "4")
            await pilot.press("down", "down", "down", "down", "down")  # code, the last one
            await wait_for(pilot, lambda: "No adapter" in text_of(app, "#spec-info"), 30)
            await press(pilot, "a")
            assert app.screen.form_title == "Adapter for code"
            app.screen.query_one("#field-path", Input).value = str(adapter)
            await press(pilot, "ctrl+s")
            # The server keeps its own copy, named for the specialist and the file's digest.
            await wait_for(pilot, lambda: "Adapter code-" in text_of(app, "#spec-info"), 30)
            assert "(scale 1, " in text_of(app, "#spec-info")
            assert [a.specialist for a in online.hive_status().adapters] == ["code"]
            await press(pilot, "x", "y")
            await wait_for(pilot, lambda: "No adapter" in text_of(app, "#spec-info"), 30)
        assert online.hive_status().adapters == []
    finally:
        online.clear_specialist_adapter("code")
