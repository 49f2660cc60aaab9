"""The solo lane's pure parts: which request may decode on the lane's model, when `serve` loads one,
and how the lane's weights are found in the process's mappings. The moves themselves run on the real
model in tests/hive/test_solo_lane_engine.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.cli import model_file
from appliance.hive.host_pages import file_ranges
from appliance.hive.slots import Active, Slot
from appliance.hive.solo_lane import HISTORY_PER_TOKEN, MIN_TOKENS_LEFT, lane_candidate
from appliance.hive.types import GenerationRequest
from appliance.settings import Settings


def running(seq: int, *, alone: bool = True, prompt: int = 10, done: int = 10, completion: int = 0) -> Slot:
    request = GenerationRequest(prompt_tokens=list(range(prompt)), max_tokens=48)
    active = Active(request, None, None, None, done, 0, prompt + 48, completion=completion, alone=alone)  # type: ignore[arg-type]
    return Slot(seq=seq, kv=list(range(done + completion)), active=active)


def test_only_a_request_running_alone_past_its_prompt_moves() -> None:
    lone = running(3)
    idle = [Slot(seq=i) for i in (0, 1, 2)]
    assert lane_candidate([*idle, lone], 0, None) is lone
    assert lane_candidate([*idle, lone], 1, None) is None  # one queued: it would leave at once
    assert lane_candidate([running(0), lone], 0, None) is None  # two running
    assert lane_candidate([running(3, prompt=10, done=4)], 0, None) is None  # still prefilling
    assert lane_candidate([running(3, alone=False)], 0, None) is None  # admitted beside another


def test_a_request_with_sibling_choices_or_drafts_stays() -> None:
    with_children = running(1)
    assert with_children.active is not None
    with_children.active.children = [(Slot(seq=2), with_children.active)]
    assert lane_candidate([with_children], 0, None) is None
    drafting = running(1)
    assert drafting.active is not None
    drafting.active.lookup = object()  # type: ignore[assignment]
    assert lane_candidate([drafting], 0, None) is None


def test_a_last_few_tokens_are_not_worth_a_move_but_a_request_there_stays() -> None:
    nearly_done = running(5, completion=48 - MIN_TOKENS_LEFT + 1)
    assert lane_candidate([nearly_done], 0, None) is None
    assert lane_candidate([nearly_done], 0, nearly_done) is nearly_done


def test_a_long_history_needs_more_tokens_to_go_for_its_move_to_pay() -> None:
    short = running(1, prompt=100, done=100, completion=38)  # 10 to go, 100 cells
    assert lane_candidate([short], 0, None) is short
    long = running(1, prompt=2000, done=2000, completion=38)  # 10 to go, 2,038 cells
    assert 10 * HISTORY_PER_TOKEN < 2038
    assert lane_candidate([long], 0, None) is None


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
        ("auto", 0.97, True, None),  # a copy about as fast at one row serves alone
        ("auto", 0.81, False, None),  # the original is served: nothing to add
        ("off", 0.81, True, None),
        ("/m/other.gguf", 0.97, True, "/m/other.gguf"),
        ("/m/other.gguf", 0.97, False, "/m/other.gguf"),  # given: beside whatever is served
    ],
)
def test_serve_loads_the_original_beside_a_copy_slower_at_one_row(
    tmp_path, setting: str, one_row: float, copy_served: bool, expected: str | None
) -> None:
    settings = Settings(data_dir=str(tmp_path), solo_model=setting)
    copy = report(one_row) if copy_served else None
    assert model_file.solo_model(settings, "/m/original.gguf", copy) == expected  # type: ignore[arg-type]


def test_a_report_without_the_one_row_measurement_adds_no_solo_model(tmp_path) -> None:
    copy = report(0.81)
    copy.candidates[0].ratios.pop("decode_one")
    settings = Settings(data_dir=str(tmp_path))
    assert model_file.solo_model(settings, "/m/original.gguf", copy) is None  # type: ignore[arg-type]


def test_model_show_names_the_solo_file_only_where_serve_loads_one(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import appliance.hive.optimize as optimize
    from appliance.cli.model import served_solo

    shown = report(0.81)
    for state, setting, expected in (
        ("in use", "auto", "/m/original.gguf"),
        ("in use", "off", None),
        ("stale: the original changed since", "auto", None),
    ):
        monkeypatch.setattr(optimize, "copy_state", lambda r, state=state: state)
        assert served_solo(Settings(data_dir=str(tmp_path), solo_model=setting), shown) == expected  # type: ignore[arg-type]
    # --optimized-model off serves the original: no copy, so nothing beside it.
    monkeypatch.setattr(optimize, "copy_state", lambda r: "in use")
    settings = Settings(data_dir=str(tmp_path), optimized_model="off")
    assert served_solo(settings, shown) is None  # type: ignore[arg-type]
