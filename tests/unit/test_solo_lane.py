"""The solo lane's pure parts: which request may decode on the lane's model, when `serve` loads one,
how the lane's weights are found in the process's mappings, and when its model is unloaded and
loaded again (with stand-ins for llama.cpp's contexts). The moves themselves run on the real
model in tests/engine/test_solo_lane_engine.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from appliance.boot import plan
from appliance.core.settings import Settings
from appliance.engine.interface import GenerationRequest
from appliance.engine.slots import Active, Slot, lone_request
from appliance.engine.tuning.host_pages import file_ranges
from appliance.engine.tuning.solo_lane import HISTORY_PER_TOKEN, MIN_TOKENS_LEFT, LaneParts, SoloLane, lane_candidate


def running(seq: int, *, alone: bool = True, prompt: int = 10, done: int = 10, completion: int = 0) -> Slot:
    request = GenerationRequest(prompt_tokens=list(range(prompt)), max_tokens=48)
    active = Active(request, None, None, None, done, 0, prompt + 48, completion=completion, alone=alone)  # type: ignore[arg-type]
    return Slot(seq=seq, kv=list(range(done + completion)), active=active)


def candidate(slots: list[Slot], waiting: int, holding: Slot | None) -> Slot | None:
    """The slot the lane takes now: the scheduler's lone request, if the lane's rule takes it."""
    seq = lane_candidate(lone_request(slots, waiting), holding.seq if holding else None)
    return next((s for s in slots if s.seq == seq), None) if seq is not None else None


def follow(lane: SoloLane, slots: list[Slot], waiting: int) -> None:
    """What the scheduler tells its decode target between steps."""
    busy = bool(waiting) or sum(1 for s in slots if s.active is not None) > 1
    lane.follow(lone_request(slots, waiting), busy)


def test_only_a_request_running_alone_past_its_prompt_moves() -> None:
    lone = running(3)
    idle = [Slot(seq=i) for i in (0, 1, 2)]
    assert candidate([*idle, lone], 0, None) is lone
    assert candidate([*idle, lone], 1, None) is None  # one queued: it would leave at once
    assert candidate([running(0), lone], 0, None) is None  # two running
    assert candidate([running(3, prompt=10, done=4)], 0, None) is None  # still prefilling
    assert candidate([running(3, alone=False)], 0, None) is None  # admitted beside another


def test_a_request_with_sibling_choices_or_drafts_stays() -> None:
    with_children = running(1)
    assert with_children.active is not None
    with_children.active.children = [(Slot(seq=2), with_children.active)]
    assert candidate([with_children], 0, None) is None
    drafting = running(1)
    assert drafting.active is not None
    drafting.active.lookup = object()  # type: ignore[assignment]
    assert candidate([drafting], 0, None) is None


def test_a_last_few_tokens_are_not_worth_a_move_but_a_request_there_stays() -> None:
    nearly_done = running(5, completion=48 - MIN_TOKENS_LEFT + 1)
    assert candidate([nearly_done], 0, None) is None
    assert candidate([nearly_done], 0, nearly_done) is nearly_done


def test_a_long_history_needs_more_tokens_to_go_for_its_move_to_pay() -> None:
    short = running(1, prompt=100, done=100, completion=38)  # 10 to go, 100 cells
    assert candidate([short], 0, None) is short
    long = running(1, prompt=2000, done=2000, completion=38)  # 10 to go, 2,038 cells
    assert 10 * HISTORY_PER_TOKEN < 2038
    assert candidate([long], 0, None) is None


def test_file_ranges_reads_the_mappings_of_one_file() -> None:
    maps = (
        "7f0000000000-7f0000100000 r--s 00000000 08:01 123 /models/a.gguf\n"
        "7f0000100000-7f0000200000 r--s 00100000 08:01 123 /models/a.gguf\n"
        "7f0000200000-7f0000300000 r--s 00000000 08:01 124 /models/b.gguf\n"
        "7f0000300000-7f0000400000 rw-p 00000000 00:00 0 \n"
        "7f0000400000-7f0000500000 r--p 00000000 08:01 125 /models/with space.gguf\n"
    )
    assert file_ranges(maps, "/models/a.gguf") == [(0x7F0000000000, 0x7F0000100000), (0x7F0000100000, 0x7F0000200000)]
    assert file_ranges(maps, "/models/with space.gguf") == [(0x7F0000400000, 0x7F0000500000)]
    assert file_ranges(maps, "/models/c.gguf") == []


def report(one_row: float) -> SimpleNamespace:
    """A kept Q8_0 copy's report, as far as serve and `model show` read it."""
    kept = SimpleNamespace(type="q8_0", ratios={"prefill": 1.9, "decode_batch": 1.3, "decode_one": one_row})
    return SimpleNamespace(
        kept="q8_0",
        candidates=[kept],
        copy_path="/m/original.q8_0.gguf",
        source=SimpleNamespace(path="/m/original.gguf"),
    )


@pytest.mark.parametrize(
    ("setting", "one_row", "copy_served", "expected"),
    [
        ("auto", 0.81, True, "/m/original.gguf"),  # the Xeon's Q8_0 copy
        ("auto", 0.94, True, "/m/original.gguf"),  # the AMD EPYC's copy, 0.90-0.98x
        ("auto", 0.98, True, None),  # a copy about as fast at one row serves alone
        ("auto", 0.81, False, None),  # the original is served: nothing to add
        ("off", 0.81, True, None),
        ("/m/other.gguf", 0.98, True, "/m/other.gguf"),
        ("/m/other.gguf", 0.98, False, "/m/other.gguf"),  # given: beside whatever is served
    ],
)
def test_serve_loads_the_original_beside_a_copy_slower_at_one_row(
    tmp_path, setting: str, one_row: float, copy_served: bool, expected: str | None
) -> None:
    settings = Settings(data_dir=str(tmp_path), solo_model=setting)
    copy = report(one_row) if copy_served else None
    assert plan.solo_model(settings, "/m/original.gguf", copy)[0] == expected  # type: ignore[arg-type]


def test_a_report_without_the_one_row_measurement_adds_no_solo_model(tmp_path) -> None:
    copy = report(0.81)
    copy.candidates[0].ratios.pop("decode_one")
    settings = Settings(data_dir=str(tmp_path))
    assert plan.solo_model(settings, "/m/original.gguf", copy)[0] is None  # type: ignore[arg-type]


def test_model_show_names_the_solo_file_only_where_serve_loads_one(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import appliance.models.select as select
    from appliance.cli.model import served_solo

    shown = report(0.81)
    for state, setting, expected in (
        ("in use", "auto", "/m/original.gguf"),
        ("in use", "off", None),
        ("stale: the original changed since", "auto", None),
    ):
        monkeypatch.setattr(select, "copy_state", lambda r, state=state: state)
        assert served_solo(Settings(data_dir=str(tmp_path), solo_model=setting), shown) == expected  # type: ignore[arg-type]
    # --optimized-model off serves the original: no copy, so nothing beside it.
    monkeypatch.setattr(select, "copy_state", lambda r: "in use")
    settings = Settings(data_dir=str(tmp_path), optimized_model="off")
    assert served_solo(settings, shown) is None  # type: ignore[arg-type]


class FakeCtx:
    """What the lane asks of a llama.cpp context, remembered."""

    def __init__(self) -> None:
        self.closed = False
        self.threads: int | None = None

    def seq_save(self, seq: int) -> bytes:
        return b"cells"

    def seq_restore(self, state: bytes, seq: int) -> bool:
        return True

    def seq_rm(self, seq: int, *args: int) -> None:
        pass

    def clear(self) -> None:
        pass

    def set_threads(self, n: int) -> None:
        self.threads = n

    def close(self) -> None:
        self.closed = True


def fake_parts() -> LaneParts:
    return LaneParts(FakeCtx(), SimpleNamespace(close=lambda: None), None)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fake_lane(load=fake_parts) -> tuple[SoloLane, LaneParts, Clock]:
    clock = Clock()
    first = fake_parts()
    return SoloLane(FakeCtx(), first, "/m/original.gguf", load, unload_after_s=5.0, clock=clock), first, clock  # type: ignore[arg-type]


def wait_for_load(lane: SoloLane) -> None:
    assert lane._loading is not None
    lane._loading.join()


def test_a_busy_spell_unloads_the_lanes_model_and_a_lone_request_loads_it_again() -> None:
    lane, first, clock = fake_lane()
    lane.set_threads(1)
    busy = [running(0, alone=False), running(1, alone=False)]
    follow(lane, busy, 0)
    clock.now += 4.9
    follow(lane, busy, 0)
    assert lane.parts is first  # a short overlap keeps it
    clock.now += 0.1
    follow(lane, busy, 0)
    assert lane.parts is None and first.ctx.closed and lane.stats.unloads == 1
    assert lane.state().startswith("original.gguf unloaded while busy; ")  # the hive status's solo_lane line
    lone = running(2)
    follow(lane, [lone], 0)  # the load starts; the request decodes on the copy meanwhile
    assert lane.holding is None and lane.ctx_for_step() is None
    wait_for_load(lane)
    follow(lane, [lone], 0)
    assert lane.holding == lone.seq and lane.stats.loads == 1
    assert lane.state().startswith("original.gguf decoding a request running alone; 1 lone requests moved there")
    assert lane.parts is not None and lane.parts.ctx.threads == 1  # the thread count in use now
    follow(lane, [lone, running(3, alone=False)], 0)  # another arrives: the first goes back
    assert lane.holding is None


def test_lone_requests_between_overlaps_keep_the_lane_loaded() -> None:
    lane, first, clock = fake_lane()
    for _ in range(10):
        lone = running(0)
        follow(lane, [lone], 0)  # decodes there
        clock.now += 3.0
        follow(lane, [lone, running(1, alone=False)], 0)  # overlapped by another
        clock.now += 3.0
        follow(lane, [running(0, alone=False), running(1, alone=False)], 0)
    assert lane.parts is first and lane.stats.unloads == 0


def test_bursts_whose_lone_moments_move_nothing_unload_it() -> None:
    """Clients in lockstep: between rounds one request runs alone for a moment, never long enough
    to move (admitted beside the others, or still prefilling): the lane is unused, so it goes."""
    lane, first, clock = fake_lane()
    for _ in range(5):  # busy again at 0, 1.5, ... 6 s
        follow(lane, [running(0, alone=False), running(1, alone=False)], 0)
        clock.now += 1.0
        follow(lane, [running(0, alone=False)], 0)
        clock.now += 0.5
    assert lane.parts is None and first.ctx.closed and lane.stats.unloads == 1


def test_a_queued_request_counts_as_busy_and_a_held_one_keeps_the_lane() -> None:
    lane, _, clock = fake_lane()
    lone = running(0)
    follow(lane, [lone], 0)
    assert lane.holding == lone.seq
    clock.now += 10
    lane._unload_if_unused(True)  # one waits: busy, but the lane still holds a request
    assert lane.parts is not None
    follow(lane, [lone], 1)  # it goes back to the main context
    clock.now += 4.9
    follow(lane, [lone], 1)
    assert lane.holding is None and lane.parts is not None
    clock.now += 0.1
    follow(lane, [lone], 1)
    assert lane.parts is None


def test_a_load_again_that_fails_leaves_the_copy_serving_every_step() -> None:
    calls: list[int] = []

    def fails() -> LaneParts:
        calls.append(1)
        raise OSError("the file is gone")

    lane, _, clock = fake_lane(fails)
    busy = [running(0, alone=False), running(1, alone=False)]
    follow(lane, busy, 0)
    clock.now += 5
    follow(lane, busy, 0)
    lone = running(2)
    follow(lane, [lone], 0)
    wait_for_load(lane)
    follow(lane, [lone], 0)
    follow(lane, [lone], 0)
    assert lane.broken and lane.parts is None and lane.holding is None and calls == [1]
    assert lane.state() == "off: original.gguf could not be loaded again; the copy serves every step"


def test_close_waits_for_a_load_and_closes_what_it_made() -> None:
    made: list[LaneParts] = []

    def slow() -> LaneParts:
        time.sleep(0.05)
        made.append(fake_parts())
        return made[-1]

    lane, first, clock = fake_lane(slow)
    busy = [running(0, alone=False), running(1, alone=False)]
    follow(lane, busy, 0)
    clock.now += 5
    follow(lane, busy, 0)
    follow(lane, [running(2)], 0)
    lane.close()
    assert first.ctx.closed and made and made[0].ctx.closed and lane.parts is None
