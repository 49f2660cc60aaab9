"""How many KV cells a context gets when `--ctx` is left to the engine (0).

On a CPU the KV cache's memory is committed only as requests fill cells (host_pages.py), so every
slot can be given the model's whole training context, up to CPU_SLOT_CTX cells: a request may use
all of it, and with one stream per slot (`--kv-cache auto` then builds split streams) attention
reads only its own cells. Beyond CPU_SLOT_CTX a CPU cannot use the room (prefilling 8k tokens
already takes tens of seconds on a few cores, minutes for a 7B model), while llama.cpp still writes
the whole cache at load: a 32k-context model on 8 slots took ten times as long to load and held gigabytes
(docs/decisions/001-cpu-context-per-slot.md). Long contexts are asked for (`--ctx`, `--slots`).
That is taken when the cache, full, would need no more than a quarter of the memory free for this
process (the machine's available memory, or what its cgroup's limit leaves if less), so that slots
filled to the brim cannot crowd out the rest of the machine. Otherwise, and on a GPU, whose memory
is allocated up front, the context is 8192 cells shared by all slots.
"""

from __future__ import annotations

from pathlib import Path

FALLBACK_CTX = 8192
MEMORY_SHARE = 0.25
# Most cells one slot gets on a CPU under --ctx 0 (see above).
CPU_SLOT_CTX = 8192


def memory_limit(
    meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup", own_cgroup: str = "/proc/self/cgroup"
) -> int:
    """Bytes of memory free for this process now: the machine's available memory, or what the
    limits of its cgroup and the cgroups above it leave if less; 0 when none can be read.
    Available rather than total because llama.cpp writes the whole cache once while creating it
    (host_pages.py gives the pages back as it goes, but where it cannot tell the cache apart, only
    after)."""
    free = 0
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        free = 0
    left = cgroup_room(Path(cgroup_root), own_cgroup)
    if left is not None:
        free = left if free == 0 else min(free, left)
    return free


def cgroup_room(root: Path, own_cgroup: str) -> int | None:
    """The least room any memory limit leaves, from this process's cgroup up to the root; None if
    none is set. v2: the "0::" line of /proc/self/cgroup, memory.max and memory.current; v1: the
    "memory" controller's line, memory.limit_in_bytes and memory.usage_in_bytes under
    <root>/memory. A container sees its own cgroup as the root (or a path it cannot find there,
    and then the root is its own)."""
    try:
        lines = Path(own_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    v1 = next((line.split(":", 2)[2] for line in lines if ":memory:" in line), None)
    if v1 is not None:
        top, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        own = v1
    else:
        top, files = root, ("memory.max", "memory.current")
        own = next((line[3:] for line in lines if line.startswith("0::")), "/")
    top = top.resolve()
    here = (top / own.lstrip("/")).resolve()
    if not here.is_dir() or top not in (here, *here.parents):
        here = top
    room: int | None = None
    while True:
        try:
            limit = (here / files[0]).read_text().strip()
            used = (here / files[1]).read_text().strip()
            if limit.isdigit() and used.isdigit():
                left = max(int(limit) - int(used), 0)
                room = left if room is None else min(room, left)
        except OSError:
            pass
        if here == top:
            return room
        here = here.parent


def slot_context(n_ctx_train: int) -> int:
    """The cells a slot is meant to hold under --ctx 0 on a CPU: the training context, up to CPU_SLOT_CTX."""
    return min(n_ctx_train, CPU_SLOT_CTX) if n_ctx_train > 0 else CPU_SLOT_CTX


def auto_context(*, slots: int, n_ctx_train: int, cell_bytes: int, memory: int, gpu: bool) -> int:
    """The context size for `--ctx 0`: slots x slot_context where that fits (see above)."""
    return context_choice(slots=slots, n_ctx_train=n_ctx_train, cell_bytes=cell_bytes, memory=memory, gpu=gpu)[0]


def context_choice(*, slots: int, n_ctx_train: int, cell_bytes: int, memory: int, gpu: bool) -> tuple[int, str]:
    """auto_context's cells, and why, in a few words (the hive status)."""
    shared = f"{FALLBACK_CTX} cells shared by all slots"
    if gpu:
        return FALLBACK_CTX, f"{shared}: a GPU's KV cache is allocated up front"
    if n_ctx_train <= 0 or cell_bytes <= 0 or memory <= 0:
        return FALLBACK_CTX, f"{shared}: the model's training context or the free memory is unknown"
    slot = slot_context(n_ctx_train)
    full = slots * slot
    if full * cell_bytes <= memory * MEMORY_SHARE:
        return full, f"{slots} slots x {slot} cells: the full cache fits in a quarter of the free memory"
    return FALLBACK_CTX, f"{shared}: {slots} x {slot} cells would need over a quarter of the free memory"
