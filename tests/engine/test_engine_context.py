"""The engine's context on the real embedded model: the KV layout and flash attention it picks,
the cells llama.cpp makes, and the memory the cache commits (lazily under --ctx 0, all at load with
--lazy-kv off)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from engine_loop import kernel_cache
from proc_status import resident_kb
from test_engine import TOPICS, generate

from appliance.engine.engine import HiveEngine, embedded_model_path, flash_attention, kv_layout
from appliance.engine.interface import EngineConfig
from appliance.engine.tuning.context_size import auto_context, memory_limit


def test_auto_flash_attention_is_timed_only_for_split_streams_on_the_cpu(caplog) -> None:
    # Which is faster on split streams depends on the CPU (tuning/attention.py times both at load); a
    # unified pool and a GPU keep llama.cpp's choice, and a setting wins.
    assert flash_attention("auto", kv_cache="split", on_gpu=False) == "measure"
    assert flash_attention("auto", kv_cache="unified", on_gpu=False) == "auto"
    assert flash_attention("auto", kv_cache="split", on_gpu=True) == "auto"
    assert flash_attention("on", kv_cache="split", on_gpu=False) == "on"
    # a model whose V rows would commit more than the limit up front (a 7B: about 1 GB with 8 slots)
    assert flash_attention("auto", kv_cache="split", on_gpu=False, v_floor=8 * 32 * 1024 * 4096) == "auto"
    loop = asyncio.new_event_loop()
    eng = HiveEngine(
        EngineConfig(
            model_path=embedded_model_path(), slots=2, n_ctx=2 * 8192, gpu=False, kernel_cache_path=kernel_cache()
        )
    )
    with caplog.at_level("INFO", logger="alveare.hive"):
        loop.run_until_complete(eng.start())
    try:
        status = eng.status()
        assert status.kv.layout == "split"
        line = next(t for t in status.tuning if t.name == "flash_attention")
        verdict = line.state.split()[0]
        # The load timed both and used the faster, as its log line and the status say.
        assert line.on and verdict in ("on", "off") and "ms with it on" in line.state
        assert f"flash attention {verdict})" in caplog.text
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()


@pytest.mark.parametrize(("n_ctx", "layout", "per_request"), [(2 * 8192, "split", 8192), (8192, "unified", 8192)])
def test_auto_kv_layout_splits_only_when_no_request_loses_context(n_ctx: int, layout: str, per_request: int) -> None:
    """`auto` builds split streams when each slot's share holds the embedded model's whole training
    context (8192), and one unified pool otherwise, so a request's limit is the same either way."""
    assert kv_layout("auto", n_ctx, 2, 8192) == layout
    assert kv_layout("unified", 2 * 8192, 2, 8192) == "unified" and kv_layout("split", 8192, 2, 8192) == "split"
    loop = asyncio.new_event_loop()
    eng = HiveEngine(
        EngineConfig(
            model_path=embedded_model_path(), slots=2, n_ctx=n_ctx, kv_cache="auto", kernel_cache_path=kernel_cache()
        )
    )
    loop.run_until_complete(eng.start())
    try:
        status = eng.status()
        assert (status.kv.layout, status.kv.context_length) == (layout, per_request)
        tokens = eng.tokenize(eng.render_chat([("user", "Name a colour.")]))
        _, finished = loop.run_until_complete(generate(eng, tokens, max_tokens=4))
        assert finished.completion_tokens > 0
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()


def reset_peak_rss() -> bool:
    """Start VmHWM (the process's peak RSS) again from its RSS now: Linux's clear_refs 5."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("n_ctx", "n_seq", "unified"), [(8192, 3, False), (8000, 8, True), (5000, 3, False)])
def test_kv_cells_is_what_llama_cpp_makes(n_ctx: int, n_seq: int, unified: bool) -> None:
    """The KV cache's pages are given back during the fill only for a mapping of exactly the size
    kv_cells predicts (host_pages.while_filling): llama.cpp's own padding, checked on this build."""
    from appliance.engine.native.llama import Context, Model, kv_cells

    model = Model(embedded_model_path(), gpu=False)
    ctx = Context(model, n_ctx=n_ctx, n_seq=n_seq, n_batch=512, threads=2, flash="off", unified=unified)
    try:
        assert ctx.n_ctx == kv_cells(n_ctx, n_seq, unified=unified)
        if not unified:
            assert ctx.n_ctx == n_seq * ctx.n_ctx_seq
    finally:
        ctx.close()
        model.close()


def test_with_lazy_kv_off_the_cache_is_resident_as_configured() -> None:
    """--lazy-kv off: llama.cpp's own allocation, every cell resident from the load (the switch works)."""
    loop = asyncio.new_event_loop()
    before = resident_kb()
    eng = HiveEngine(EngineConfig(model_path=embedded_model_path(), slots=4, n_ctx=4096, gpu=False, lazy_kv=False))
    loop.run_until_complete(eng.start())
    try:
        assert eng.loaded, eng.status().load_error
        model = eng._model
        assert model is not None
        kv_kb = model.kv_cell_bytes * eng.status().kv.cells // 1024
        assert resident_kb() - before > kv_kb * 3 // 4, (before, resident_kb(), kv_kb)
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()


def test_the_default_context_gives_each_slot_the_training_context_and_commits_memory_as_cells_fill() -> None:
    """`--ctx 0` (the default) on a CPU: every slot the model's whole context in its own stream, the
    KV cache's memory given back while llama.cpp zero-fills it, and taken again only as cells fill."""
    loop = asyncio.new_event_loop()
    peak_from_here = reset_peak_rss()
    before = resident_kb()
    # on the CPU on any build (a GPU's default is 8192 cells allocated up front: context_size.py)
    eng = HiveEngine(
        EngineConfig(model_path=embedded_model_path(), slots=8, gpu=False, kernel_cache_path=kernel_cache())
    )
    loop.run_until_complete(eng.start())
    try:
        assert eng.loaded, eng.status().load_error
        model = eng._model
        assert model is not None
        status = eng.status()
        expected = auto_context(
            slots=8, n_ctx_train=model.n_ctx_train, cell_bytes=model.kv_cell_bytes, memory=memory_limit(), gpu=False
        )
        assert status.kv.cells == expected
        if expected != 8 * 8192:
            pytest.skip(f"this machine has too little free memory for the full default ({expected} cells)")
        assert (status.kv.layout, status.kv.context_length) == ("split", 8192)
        kv_kb = model.kv_cell_bytes * status.kv.cells // 1024
        loaded = resident_kb()
        assert loaded - before < kv_kb // 4, (before, loaded, kv_kb)
        if peak_from_here:  # never resident all at once, not even while llama.cpp was filling it
            assert resident_kb("VmHWM") - before < kv_kb // 4, (before, resident_kb("VmHWM"), kv_kb)
        # A prompt longer than the 1,024 cells a slot would get from 8192 split 8 ways.
        text = " ".join(f"{TOPICS[i % len(TOPICS)]} number {i}." for i in range(300))
        tokens = eng.tokenize(eng.render_chat([("user", f"{text} Which topic came first?")]))
        assert len(tokens) > 1500
        _, finished = loop.run_until_complete(generate(eng, tokens, max_tokens=4))
        assert finished.finish_reason == "length", finished
        # The cells that prompt filled are committed: about 35 MB, far from the 1.4 GB cache.
        assert resident_kb() - loaded < kv_kb // 4
    finally:
        loop.run_until_complete(eng.stop())
        loop.close()
