"""The GPU path is a configuration switch: with a build that supports offload, every layer goes to
the GPU; `gpu off` or a CPU build keeps everything on the CPU. CI has no
GPU, so the switch is checked by standing in for llama.cpp's capability probe."""

from __future__ import annotations

import llama_cpp as ll
import pytest

from appliance.engine.engine import embedded_model_path
from appliance.engine.native import llama


@pytest.fixture
def spy(monkeypatch):
    seen: dict[str, int] = {}
    load, init = ll.llama_model_load_from_file, ll.llama_init_from_model

    def load_spy(path, params):
        seen["n_gpu_layers"] = params.n_gpu_layers
        return load(path, params)

    def init_spy(model, params):
        seen["flash_attn_type"] = params.flash_attn_type
        return init(model, params)

    monkeypatch.setattr(ll, "llama_model_load_from_file", load_spy)
    monkeypatch.setattr(ll, "llama_init_from_model", init_spy)
    return seen


@pytest.mark.parametrize(
    ("supported", "wanted", "offloaded"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_offload_all_layers_only_when_supported_and_wanted(monkeypatch, spy, supported, wanted, offloaded) -> None:
    monkeypatch.setattr(ll, "llama_supports_gpu_offload", lambda: supported)
    model = llama.Model(embedded_model_path(), gpu=wanted)
    try:
        assert spy["n_gpu_layers"] == (999 if offloaded else 0)
        assert model.gpu_layers == (model.n_layers if offloaded else 0)
        ctx = llama.Context(model, n_ctx=512, n_seq=2, n_batch=64, threads=1, flash="auto")
        assert spy["flash_attn_type"] == -1  # flash attention where the backend has it
        ctx.close()
    finally:
        model.close()
