"""Snapshots pin the look of every screen, at 80x24 and at 200x50, on fixed seeded data.

Timestamps and keys are frozen (the `frozen` fixture), the period is fixed to 2026-03, and the
live hive status is a fixed, recorded HiveStatus shown by the screen's own rendering code.
Update after a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import msgspec
import pytest
from pilot_helpers import press, settle, text_of
from textual.widgets import Input

from appliance.admin.local import LocalAdmin
from appliance.admin.ops import TryItEvent
from appliance.core.protocol import CpuStatus, HiveNode, HiveSample, HiveStatus, KvStatus, ModelStatus, TuningLine
from tui.app import AlveareApp

SMALL = (80, 24)
LARGE = (200, 50)

STATUS = HiveStatus(
    version="0.1.0",
    uptime_seconds=3 * 3600 + 25 * 60 + 7,
    model=ModelStatus(
        name="SmolLM2-135M-Instruct.Q4_1",
        file="/m/SmolLM2-135M-Instruct.Q4_1.gguf",
        optimized_from="",
        solo_file="",
        size_bytes=96_600_000,
        n_params=134_515_008,
        device="cpu",
        gpu_layers=0,
        chat_template="",
    ),
    kv=KvStatus(layout="split", cells=65_536, context_length=8192),
    cpu=CpuStatus(
        kernels="fast", kernels_source="check", kernels_reason="the fast CPU kernels decoded correctly", threads=2
    ),
    tuning=[
        TuningLine(name="threads", on=True, setting="--adaptive-threads", state="2 of 2 threads"),
        TuningLine(
            name="idle_cpu", on=True, setting="--adaptive-threads", state="1.9 idle cores at the latest reading"
        ),
        TuningLine(name="context_size", on=True, setting="--ctx", state="65536 cells, 8 slots x 8192 cells"),
        TuningLine(
            name="host_pages", on=True, setting="--lazy-kv", state="a KV cache of 1440 MB, committed as cells fill"
        ),
        TuningLine(name="solo_lane", on=False, setting="--solo-model", state="off: no file to decode on"),
        TuningLine(name="optimized_copy", on=False, setting="--optimized-model", state="serving the file itself"),
    ],
    slots_total=8,
    slots_busy=3,
    queue_depth=2,
    queue_limit=64,
    tokens_per_second=212.4,
    prompt_tokens_per_second=1830.0,
    requests_served=15_230,
    prefix_cache_hits=12_011,
    prefix_cache_lookups=15_230,
    prefix_cache_hit_rate=0.789,
    prefix_cache_tokens_reused=2_400_000,
    draft_tokens=3000,
    draft_tokens_accepted=2000,
    specialists=["classify", "summarise", "extract", "qa", "chat", "code"],
    loaded=True,
    load_error=None,
    requests_per_minute=42,
    errors_by_status={"429": 17, "503": 2},
    history=[
        HiveSample(
            t=1_700_000_000 + 10 * i, tokens=(i * 37) % 23 * 90 + 200, requests=(i * 7) % 9 + 1, errors=i % 5 == 0
        )
        for i in range(60)
    ],
)


def app_for(admin: LocalAdmin, **kwargs) -> AlveareApp:
    return AlveareApp(admin, period="2026-03", poll_interval=None, **kwargs)


def steps(*keys: str):
    """A run_before that waits for the back-end workers, presses keys, and waits again."""

    async def run(pilot) -> None:
        await settle(pilot)
        await press(pilot, *keys)

    return run


def test_hive_down(snap_compare, seeded: LocalAdmin) -> None:
    app = AlveareApp(seeded, period="2026-03", poll_interval=600)
    assert snap_compare(app, terminal_size=SMALL, run_before=steps())


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x50"])
def test_hive_live(snap_compare, seeded: LocalAdmin, size) -> None:
    async def show(pilot) -> None:
        await settle(pilot)
        pilot.app.query_one("#view-hive").show_status(STATUS)
        pilot.app.sub_title = "server online"  # as with a real server behind it
        await settle(pilot)

    assert snap_compare(app_for(seeded), terminal_size=size, run_before=show)


def node(id: str, state: str, age: float, busy: int, this: bool = False) -> HiveNode:
    return HiveNode(
        id=id, url=f"http://10.0.0.{id[-1]}:8080", state=state, heartbeat_age_seconds=age, version="0.1.0",
        model="SmolLM2-135M-Instruct", slots_total=8, slots_busy=busy, queue_depth=0, tokens_per_second=12.5 * busy,
        started_at="2026-03-14T09:00:00Z", this_node=this,
    )  # fmt: skip


def test_hive_cluster(snap_compare, seeded: LocalAdmin) -> None:
    """A node of a cluster: every node below the live status, the one answering marked, one down."""
    nodes = [node("node1", "up", 1.0, 3, this=True), node("node2", "up", 0.4, 8), node("node3", "down", 42.0, 0)]

    async def show(pilot) -> None:
        await settle(pilot)
        pilot.app.query_one("#view-hive").show_status(msgspec.structs.replace(STATUS, nodes=nodes))
        pilot.app.sub_title = "server online"
        await settle(pilot)

    assert snap_compare(app_for(seeded), terminal_size=LARGE, run_before=show)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x50"])
def test_accounts(snap_compare, seeded: LocalAdmin, size) -> None:
    assert snap_compare(app_for(seeded), terminal_size=size, run_before=steps("2"))


def test_plan_form(snap_compare, seeded: LocalAdmin) -> None:
    async def edit(pilot) -> None:
        await settle(pilot)
        await press(pilot, "2", "e")

    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=edit)


def test_plan_form_refused(snap_compare, seeded: LocalAdmin) -> None:
    """A refused save: the dialog stays, the reason under the fields, the field it names marked."""

    async def refuse(pilot) -> None:
        await settle(pilot)
        await press(pilot, "2", "e")
        pilot.app.screen.query_one("#field-requests_per_minute", Input).value = "-5"
        await press(pilot, "ctrl+s")

    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=refuse)


def test_keys(snap_compare, seeded: LocalAdmin) -> None:
    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=steps("3"))


def test_new_key(snap_compare, seeded: LocalAdmin) -> None:
    async def create(pilot) -> None:
        await settle(pilot)
        await press(pilot, "3")
        await press(pilot, "n")  # asks for the account (all are listed)
        await press(pilot, "ctrl+s")

    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=create)


def test_specialists(snap_compare, seeded: LocalAdmin) -> None:
    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=steps("4"))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x50"])
def test_specialists_try_it(snap_compare, seeded: LocalAdmin, size) -> None:
    async def answer(pilot) -> None:
        await settle(pilot)
        await press(pilot, "4")
        await pilot.press("down", "down", "down", "down")  # chat
        view = pilot.app.query_one("#view-specialists")
        prompt = "Name three colours."
        for piece in ["Red", ",", " green", " and", " blue", "."]:
            view._event(prompt, TryItEvent(text=piece), 0.4)
        done = TryItEvent(
            done=True,
            prompt_tokens=41,
            completion_tokens=6,
            latency_ms=312,
            time_to_first_token_ms=95,
            finish_reason="stop",
        )
        view._event(prompt, done, 0.5)
        await settle(pilot)

    assert snap_compare(app_for(seeded), terminal_size=size, run_before=answer)


def test_prompts(snap_compare, seeded: LocalAdmin) -> None:
    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=steps("5", "down"))


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x50"])
def test_usage(snap_compare, seeded: LocalAdmin, size) -> None:
    assert snap_compare(app_for(seeded), terminal_size=size, run_before=steps("6"))


def test_help(snap_compare, seeded: LocalAdmin) -> None:
    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=steps("f1"))


def test_specialist_form(snap_compare, seeded: LocalAdmin) -> None:
    """The prompt editor with its parameters and buttons fits in 80x24."""
    assert snap_compare(app_for(seeded), terminal_size=SMALL, run_before=steps("4", "down", "e"))


@pytest.mark.anyio
async def test_hive_names_the_optimised_copy_when_it_is_served(seeded: LocalAdmin) -> None:
    app = app_for(seeded)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        view = app.query_one("#view-hive")
        view.show_status(STATUS)
        assert "optimised copy" not in text_of(app, "#hive-state")
        copy = "/data/models/SmolLM2-135M-Instruct.Q4_1-0123456789ab.q8_0.gguf"
        model = msgspec.structs.replace(STATUS.model, file=copy, optimized_from="/m/SmolLM2.gguf")
        view.show_status(msgspec.structs.replace(STATUS, model=model))
        await settle(pilot)
        assert f"Serving the optimised copy {copy}" in text_of(app, "#hive-state")


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x50"])
def test_audit(snap_compare, seeded: LocalAdmin, size) -> None:
    assert snap_compare(app_for(seeded), terminal_size=size, run_before=steps("7"))
