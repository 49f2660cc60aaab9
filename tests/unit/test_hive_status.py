"""The engine's status without a model (hive_status.py): what an engine that has not loaded reports,
and the tuning lines, from stand-ins for the pieces a load leaves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from alveare.types import TUNING_PIECES
from appliance.engine.hive_status import TuningState, engine_status, solo_lane_on, tuning_lines
from appliance.engine.interface import EngineConfig, EngineStatus
from appliance.engine.tuning.host_pages import pages_choice
from appliance.engine.tuning.idle_cpu import IdleCpu
from appliance.engine.tuning.threads import ThreadPolicy


def lane(*, broken: bool) -> Any:
    """A stand-in for a SoloLane: the status reads its file, whether it broke, and its state."""
    return SimpleNamespace(path="/models/original.gguf", broken=broken, state=lambda: "original.gguf loaded")


def loaded_tuning(tmp_path: Path) -> TuningState:
    return TuningState(
        idle=IdleCpu(tmp_path / "no-stat"),
        policy=ThreadPolicy(4),
        context_why="8 slots x 8192 cells: the full cache fits in a quarter of the free memory",
        pages=pages_choice(released=True, on_host=True, asked=True, cache_bytes=1400 << 20),
    )


def unloaded(cfg: EngineConfig, *, lane: Any = None, load_error: str | None = None) -> EngineStatus:
    """The status of an engine with nothing loaded (a solo lane may be, in these tests)."""
    return engine_status(
        cfg,
        name=Path(cfg.model_path).stem,
        load_error=load_error,
        model=None,
        ctx=None,
        scheduler=None,
        lane=lane,
        kernels=None,
        device="cpu",
        template="",
        kv_layout="auto",
        context_length=cfg.n_ctx,
        tuning=TuningState(),
    )


def test_an_engine_that_has_not_loaded_reports_its_configuration_and_no_tuning() -> None:
    cfg = EngineConfig(model_path="/models/m.gguf", n_ctx=4096, slots=4)
    status = unloaded(cfg, load_error="model file not found: /models/m.gguf")
    assert not status.loaded and status.load_error == "model file not found: /models/m.gguf"
    assert (status.kv.cells, status.slots_total, status.tuning, status.model.solo_file) == (4096, 4, [], "")


def test_each_tuning_piece_has_one_line_in_order(tmp_path: Path) -> None:
    cfg = EngineConfig(model_path="/models/m.gguf")
    lines = tuning_lines(cfg, loaded_tuning(tmp_path), None, 65536)
    assert tuple(line.name for line in lines) == TUNING_PIECES
    by_name = {line.name: line for line in lines}
    assert by_name["threads"].on and not by_name["idle_cpu"].on  # no /proc/stat at that path
    assert by_name["context_size"].state.startswith("65536 cells, 8 slots x 8192 cells")
    assert not by_name["flash_attention"].on  # nothing timed: llama.cpp's choice
    assert by_name["host_pages"].on and by_name["host_pages"].state.startswith("a KV cache of 1400 MB")
    assert not by_name["solo_lane"].on and by_name["solo_lane"].state == "off: no file to decode on (see --solo-model)"
    assert not by_name["optimized_copy"].on and by_name["optimized_copy"].state == "serving m.gguf itself"


def test_the_solo_lane_is_on_and_its_file_shown_while_it_is_loaded_and_not_broken(tmp_path: Path) -> None:
    cfg = EngineConfig(model_path="/models/copy.gguf", solo_model_path="/models/original.gguf")
    assert not solo_lane_on(None)
    for broken in (False, True):
        solo = lane(broken=broken)
        line = next(line for line in tuning_lines(cfg, loaded_tuning(tmp_path), solo, 1) if line.name == "solo_lane")
        assert line.on is solo_lane_on(solo) is (not broken) and line.state == "original.gguf loaded"
        assert unloaded(cfg, lane=solo).model.solo_file == ("" if broken else "/models/original.gguf")


def test_the_api_docs_list_the_tuning_pieces_in_the_status_order() -> None:
    api = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    listed = ", ".join(f"`{name}`" for name in TUNING_PIECES)
    assert f"({listed}:" in api, "docs/api.md's /v1/hive/status row must list alveare.types.TUNING_PIECES in order"
