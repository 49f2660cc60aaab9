"""The KV cache's memory: the context size `--ctx 0` picks (context_size.py) and giving back the
pages llama.cpp zero-fills (host_pages.py): the maps arithmetic with made-up text, and the release
itself on a real anonymous mapping of this process."""

from __future__ import annotations

import ctypes
import mmap
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from proc_status import resident_kb

from appliance.engine.engine import kv_layout
from appliance.engine.native.llama import kv_cells
from appliance.engine.tuning.context_size import (
    CPU_SLOT_CTX,
    FALLBACK_CTX,
    MEMORY_SHARE,
    auto_context,
    context_choice,
    memory_limit,
    slot_context,
)
from appliance.engine.tuning.host_pages import (
    PAGE,
    HostPages,
    anonymous_ranges,
    new_ranges,
    pages_choice,
    zero_page_runs,
)

CELL = 23_040  # the embedded model's bytes per KV cell
GB = 1 << 30


def test_every_slot_gets_the_training_context_where_a_full_cache_fits_a_quarter_of_free_memory() -> None:
    assert auto_context(slots=8, n_ctx_train=8192, cell_bytes=CELL, memory=20 * GB, gpu=False) == 65536
    full = 8 * 8192 * CELL
    assert auto_context(slots=8, n_ctx_train=8192, cell_bytes=CELL, memory=int(full / MEMORY_SHARE), gpu=False) == 65536
    assert auto_context(slots=8, n_ctx_train=8192, cell_bytes=CELL, memory=int(full / MEMORY_SHARE) - 1, gpu=False) == (
        FALLBACK_CTX
    )
    # A model with a short training context gets exactly slots x that, smaller than the fallback.
    assert auto_context(slots=4, n_ctx_train=512, cell_bytes=CELL, memory=20 * GB, gpu=False) == 2048


def test_a_long_context_model_gets_cpu_slot_ctx_per_slot_not_its_training_context() -> None:
    """Gemma 3 270M (32k, 18,432 bytes a cell) on 8 slots: 8 x 8192 cells, not 8 x 32768 (4.8 GB that
    llama.cpp writes at load, 13 s of it); split, so each request still gets the whole 8192."""
    assert CPU_SLOT_CTX == 8192 and slot_context(32768) == 8192 and slot_context(4096) == 4096
    assert auto_context(slots=8, n_ctx_train=32768, cell_bytes=18_432, memory=20 * GB, gpu=False) == 8 * 8192
    assert kv_layout("auto", 8 * 8192, 8, slot_context(32768)) == "split"
    # A 7B model with 128k context (Llama 3.1 8B: 131,072 bytes a cell) on 8 slots: 8.6 GB full, so
    # 20 GB free is too little for a quarter and it falls back to 8192 shared cells.
    assert auto_context(slots=8, n_ctx_train=131072, cell_bytes=131_072, memory=20 * GB, gpu=False) == FALLBACK_CTX


@pytest.mark.parametrize(
    ("n_ctx_train", "cell_bytes", "memory", "gpu"),
    [(8192, CELL, 20 * GB, True), (0, CELL, 20 * GB, False), (8192, 0, 20 * GB, False), (8192, CELL, 0, False)],
)
def test_the_fallback_on_a_gpu_or_when_a_figure_is_unknown(
    n_ctx_train: int, cell_bytes: int, memory: int, gpu: bool
) -> None:
    got = auto_context(slots=8, n_ctx_train=n_ctx_train, cell_bytes=cell_bytes, memory=memory, gpu=gpu)
    assert got == FALLBACK_CTX


def test_the_context_choice_says_why() -> None:
    """The hive status's context_size line: the same cells as auto_context, and the rule that gave them."""
    cells, why = context_choice(slots=8, n_ctx_train=8192, cell_bytes=CELL, memory=20 * GB, gpu=False)
    assert cells == 65536 and why.startswith("8 slots x 8192 cells")
    cells, why = context_choice(slots=8, n_ctx_train=131072, cell_bytes=131_072, memory=20 * GB, gpu=False)
    assert cells == FALLBACK_CTX and "over a quarter of the free memory" in why
    assert "GPU" in context_choice(slots=8, n_ctx_train=8192, cell_bytes=CELL, memory=20 * GB, gpu=True)[1]


def test_free_memory_is_the_lower_of_the_machines_and_every_cgroup_limit_above_this_process(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n")
    root = tmp_path / "cg"
    service = root / "system.slice" / "alveare.service"
    service.mkdir(parents=True)
    own = tmp_path / "self-cgroup"
    own.write_text("0::/system.slice/alveare.service\n")

    def free() -> int:
        return memory_limit(str(meminfo), str(root), str(own))

    assert free() == 20_000_000 * 1024  # no limits: the machine's available memory
    (service / "memory.max").write_text("max\n")
    (service / "memory.current").write_text("1000\n")
    assert free() == 20_000_000 * 1024  # a cgroup without a limit
    (service / "memory.max").write_text(f"{4 * GB}\n")
    (service / "memory.current").write_text(f"{GB}\n")
    assert free() == 3 * GB  # the service's own limit (a systemd MemoryMax=)
    (root / "system.slice" / "memory.max").write_text(f"{2 * GB}\n")
    (root / "system.slice" / "memory.current").write_text(f"{GB}\n")
    assert free() == GB  # a tighter limit further up
    own.write_text("0::/\n")  # a container: its cgroup is the root it sees
    (root / "memory.max").write_text(f"{8 * GB}\n")
    (root / "memory.current").write_text(f"{2 * GB}\n")
    assert free() == 6 * GB
    assert memory_limit(str(tmp_path / "none"), str(tmp_path / "none"), str(tmp_path / "none")) == 0


def test_cgroup_v1_limits_count_too_and_an_unknown_path_falls_back_to_the_root(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:   20000000 kB\n")
    root = tmp_path / "cg"
    job = root / "memory" / "jobs" / "one"
    job.mkdir(parents=True)
    own = tmp_path / "self-cgroup"
    own.write_text("5:devices:/\n4:memory:/jobs/one\n0::/\n")
    (job / "memory.limit_in_bytes").write_text(f"{4 * GB}\n")
    (job / "memory.usage_in_bytes").write_text(f"{GB}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (root / "memory" / "memory.usage_in_bytes").write_text(f"{5 * GB}\n")
    assert memory_limit(str(meminfo), str(root), str(own)) == 3 * GB
    own.write_text("4:memory:/somewhere/on/the/host\n")  # a container's view: not under its root
    assert memory_limit(str(meminfo), str(root), str(own)) == 20_000_000 * 1024


MAPS = """\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r--p 00000000 08:01 1234                       /usr/lib/libc.so.6
7f0000200000-7f0000300000 ---p 00000000 00:00 0
7f0000300000-7f0000400000 rw-s 00000000 00:01 99                         /dev/zero (deleted)
7f0000400000-7f0000500000 rw-p 00000000 00:00 0
"""


def test_only_private_writable_anonymous_ranges_count() -> None:
    assert anonymous_ranges(MAPS) == [(0x7F0000000000, 0x7F0000100000), (0x7F0000400000, 0x7F0000500000)]


def test_new_ranges_subtract_addresses_so_a_merged_neighbour_is_not_new() -> None:
    before = [(100, 200), (400, 500)]
    # A new mapping just below an old one merges with it into one line of the maps file.
    after = [(50, 200), (300, 350), (400, 600)]
    assert new_ranges(before, after) == [(50, 100), (300, 350), (500, 600)]
    assert new_ranges(before, before) == []


def test_zero_page_runs() -> None:
    pages = np.zeros((8, PAGE // 8), dtype=np.uint64)
    pages[0, 5] = pages[3, 0] = pages[7, 511] = 1
    assert zero_page_runs(pages) == [(1, 2), (4, 3)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
def test_the_host_pages_line_is_on_only_where_the_load_gave_the_pages_back() -> None:
    cache = 1400 << 20
    assert pages_choice(released=True, on_host=True, asked=True, cache_bytes=cache) == (
        True,
        "a KV cache of 1400 MB, committed as requests fill cells",
    )
    gpu, asked_off, none_found = (
        pages_choice(released=False, on_host=on_host, asked=asked, cache_bytes=cache)
        for on_host, asked in ((False, True), (True, False), (True, True))
    )
    assert not (gpu.on or asked_off.on or none_found.on)
    assert "GPU" in gpu.why and "--lazy-kv off" in asked_off.why and "not Linux" in none_found.why


def test_the_zero_run_of_the_caches_size_is_given_back_and_reads_as_zeros() -> None:
    pages = HostPages()
    pages.snapshot()
    size = 32 << 20
    # A stand-in for llama.cpp's allocation: a header page, the cache zero-filled by writing (so it is
    # resident, as after llama.cpp's memset), then data of something else right after it.
    region = mmap.mmap(-1, size + 2 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = np.frombuffer(region, dtype=np.uint8)
    view[:] = 0
    view[0] = 7
    view[-1] = 9
    resident = resident_kb()
    assert pages.release_zero_run(size) == size
    assert resident - resident_kb() > size // 1024 * 0.9
    assert view[0] == 7 and view[-1] == 9 and not view[PAGE:-PAGE].any()
    view[PAGE + 100] = 3  # written again, as a cell that fills: an ordinary page
    assert view[PAGE + 100] == 3
    del view
    region.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
def test_nothing_is_given_back_when_no_zero_run_has_the_caches_size() -> None:
    pages = HostPages()
    pages.snapshot()
    region = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = np.frombuffer(region, dtype=np.uint8)
    view[:] = 0  # a fresh zero run twice the size asked for: perhaps someone else's memory
    assert pages.release_zero_run(32 << 20) == 0
    del view
    region.close()


def filled_in_steps(address: int, size: int, steps: int = 64) -> int:
    """A stand-in for llama.cpp's memset of a new cache, slowed down (a sleep between steps) so
    that the chasing thread runs within it; the most KB that became resident meanwhile."""
    start = peak = resident_kb()
    step = size // steps
    for i in range(steps):
        ctypes.memset(address + i * step, 0, step)
        peak = max(peak, resident_kb())
        time.sleep(0.01)
    return peak - start


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
def test_pages_are_given_back_while_the_fill_runs_and_the_allocators_pages_are_left() -> None:
    size = 256 << 20
    pages = HostPages()
    pages.snapshot()
    region = mmap.mmap(-1, size + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # + the allocator's page
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    ctypes.memset(address, 7, 16)  # its header, in the first page

    def fill() -> int:
        return filled_in_steps(address + 64, size)

    grown_kb = pages.while_filling(size, fill)
    # Without the chase the whole 256 MB would be resident by now; with it, a few steps' worth.
    assert grown_kb < size // 1024 // 4
    assert region[:16] == b"\x07" * 16 and not any(region[64 : 64 + size : PAGE])
    assert pages.release_zero_run(size) > 0  # the pass after the fill still finds the cache
    region.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_DONTNEED) is Linux's")
def test_a_mapping_of_another_size_is_never_touched_while_the_fill_runs() -> None:
    # A cache merged with a neighbour in the maps file (or any other new memory): what is written
    # there during the fill must stay, so the chase gives back nothing it has not told apart.
    size = 64 << 20
    pages = HostPages()
    pages.snapshot()
    region = mmap.mmap(-1, size + (1 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))

    def fill() -> None:
        for i in range(32):
            ctypes.memset(address + i * (size // 32), 0x5A, size // 32)
            time.sleep(0.01)

    pages.while_filling(size, fill)
    assert region[:size:PAGE] == b"\x5a" * (size // PAGE)
    region.close()


def test_without_a_snapshot_nothing_is_chased() -> None:
    # A GPU's cache: no snapshot is taken, so there is nothing new to tell the buffer apart from.
    pages = HostPages()
    assert pages.while_filling(64 << 20, lambda: "made") == "made"
    assert pages._before is None


def test_the_cells_llama_cpp_makes_of_a_context_size() -> None:
    # llama-context.cpp pads the context, and split, each stream, to 256 cells.
    assert kv_cells(65536, 8, unified=False) == 65536
    assert kv_cells(8000, 8, unified=True) == 8192
    assert kv_cells(8192, 3, unified=False) == 3 * 2816  # 2730 cells a stream, padded
    assert kv_cells(100, 1, unified=False) == 256
