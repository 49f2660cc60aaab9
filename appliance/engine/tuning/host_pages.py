"""Giving back the host memory llama.cpp clears but no request has used yet.

llama.cpp allocates a context's KV cache and zero-fills all of it at once, so every cell is
resident from the start, used or not. Anonymous memory reads back as zeros after
madvise(MADV_DONTNEED), so handing back pages that hold only zeros changes nothing the process can
see and frees them until something writes there: the KV cache then costs memory as requests fill
cells, not as configured. That is what lets a CPU context give every slot the model's whole context
(see context_size.py) without committing it up front. Its pages are committed again as cells are
written; the ceiling stays the configured size.

Linux only (elsewhere this does nothing), and never on memory a GPU driver may have pinned: the
device would keep the old pages while the process got new ones.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

PAGE = 4096
MADV_DONTNEED = 4
MADV_NOHUGEPAGE = 15
# A smaller KV cache is not worth a scan.
MIN_RANGE = 16 << 20

# How often the fill is chased (HostPages.while_filling): the fill commits at most this long's
# worth of pages (a few MB at memset's pace) before they are given back.
CHASE_S = 0.005

Ranges = list[tuple[int, int]]
T = TypeVar("T")


def anonymous_ranges(maps: str) -> Ranges:
    """The private, writable, anonymous address ranges in a /proc/<pid>/maps text."""
    out: Ranges = []
    for line in maps.splitlines():
        fields = line.split()
        # address perms offset dev inode [path]: no path means anonymous (heap and stack are named).
        if len(fields) == 5 and fields[1].startswith("rw") and fields[1].endswith("p"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out.append((start, end))
    return out


def file_ranges(maps: str, path: str) -> Ranges:
    """The address ranges mapping the file at `path` (its real path) in a /proc/<pid>/maps text."""
    out: Ranges = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == path:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out.append((start, end))
    return out


def new_ranges(before: Ranges, after: Ranges) -> Ranges:
    """The parts of `after` that `before` did not cover. A new mapping may have merged with an old
    neighbour into one line of the maps file, so this subtracts address ranges, not lines."""
    out: Ranges = []
    for start, end in after:
        parts = [(start, end)]
        for old_start, old_end in before:
            if old_end <= start or old_start >= end:
                continue
            kept: Ranges = []
            for a, b in parts:
                if old_end <= a or old_start >= b:
                    kept.append((a, b))
                    continue
                if a < old_start:
                    kept.append((a, old_start))
                if old_end < b:
                    kept.append((old_end, b))
            parts = kept
        out.extend(parts)
    return out


def zero_page_runs(words: np.ndarray) -> list[tuple[int, int]]:
    """(first page, page count) of each run of all-zero pages, `words` being uint64 words, a
    page's worth per row."""
    zero = ~words.any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], zero.view(np.int8), [0]))))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


class PagesChoice(NamedTuple):
    """Whether the KV cache's memory is committed as requests fill cells, and why, in a few words (the
    hive status's host_pages line)."""

    on: bool
    why: str


def pages_choice(*, released: bool, on_host: bool, asked: bool, cache_bytes: int) -> PagesChoice:
    """The choice for a context of `cache_bytes` of KV cache: `released`, its zero pages were given
    back at the load (HostPages.release_zero_run); `on_host`, the cache is in host memory; `asked`, --lazy-kv on."""
    mb = cache_bytes >> 20
    if released:
        return PagesChoice(True, f"a KV cache of {mb} MB, committed as requests fill cells")
    if not on_host:
        return PagesChoice(False, "off: the KV cache is in the GPU's memory, allocated up front")
    if not asked:
        return PagesChoice(False, f"off: --lazy-kv off; the KV cache of {mb} MB is resident from the load")
    return PagesChoice(False, "off: no zero pages to give back here (not Linux, or a cache under 16 MB)")


class HostPages:
    """Takes a snapshot of the process's anonymous memory before llama.cpp creates a context, and
    afterwards gives back the KV cache's pages: the run of zero pages, among the address ranges
    mapped since, whose length is the KV cache's size. A zero run of another length may be
    something else's fresh memory (another thread's, which it may write at any moment), so only
    the run that size pins down is touched; where none matches, nothing is."""

    def __init__(self, maps_path: str = "/proc/self/maps") -> None:
        self.maps_path = maps_path
        self.enabled = sys.platform.startswith("linux")
        self._before: Ranges | None = None  # the snapshot's ranges; None: none taken
        self._madvise = None
        self._malloc_trim = None
        # The KV cache's pages release_zero_run gave back: (address, length), for release_again.
        self.region: tuple[int, int] | None = None
        if self.enabled:
            # The process's own symbols, libc's among them (find_library would run ldconfig).
            libc = ctypes.CDLL(None, use_errno=True)
            self._madvise = libc.madvise
            self._madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self._madvise.restype = ctypes.c_int
            # glibc's; other C libraries may have none.
            self._malloc_trim = getattr(libc, "malloc_trim", None)

    def trim_heap(self) -> None:
        """Give the C heap's free pages back to the system: what a freed model's many small
        allocations (its vocabulary: ~17 MB for the embedded model) leave resident otherwise."""
        if self.enabled and self._malloc_trim is not None:
            self._malloc_trim(0)

    def _read(self) -> Ranges:
        try:
            with open(self.maps_path, encoding="ascii") as f:
                return anonymous_ranges(f.read())
        except OSError:
            return []

    def snapshot(self) -> None:
        if self.enabled:
            self._before = self._read()

    def release_zero_run(self, size: int) -> int:
        """Bytes given back: the pages of the one zero run of `size` bytes (give or take the page
        its start or end shares with a neighbour) mapped since `snapshot`, or 0."""
        if not self.enabled or self._madvise is None or size < MIN_RANGE:
            return 0
        pages = size // PAGE
        found: list[tuple[int, int]] = []
        for start, end in new_ranges(self._before or [], self._read()):
            start = -(-start // PAGE) * PAGE
            end = end // PAGE * PAGE
            if end - start < size - PAGE:
                continue
            words = np.ctypeslib.as_array((ctypes.c_uint64 * ((end - start) // 8)).from_address(start))
            for first, count in zero_page_runs(words.reshape(-1, PAGE // 8)):
                if pages - 1 <= count <= pages + 1:
                    found.append((start + first * PAGE, count * PAGE))
        self._before = None
        if len(found) != 1:
            return 0  # none, or more than one that size: not sure which is the cache
        address, length = found[0]
        if self._madvise(address, length, MADV_DONTNEED) != 0:
            return 0
        self.region = (address, length)
        # Where transparent huge pages are always on, one cell written would commit 2 MB around it:
        # the cache's tensors are laid out stream by stream, so every stream of every layer would.
        self._madvise(address, length, MADV_NOHUGEPAGE)
        return length

    def release_again(self) -> int:
        """Give back the region release_zero_run found once more, for a cache whose every cell is free
        again (the solo lane's between lone requests): its pages read as the zeros llama.cpp filled it
        with. Wrong for a cache that holds cells still in use. Bytes given back."""
        if self.region is None or self._madvise is None:
            return 0
        address, length = self.region
        return length if self._madvise(address, length, MADV_DONTNEED) == 0 else 0

    def release_file(self, path: str) -> int:
        """Drop this process's pages of a file it maps read-only (a model's weights), so they stop
        counting as its memory; they stay in the page cache, and a later read maps them again
        (minor faults, no disk read). Bytes of mappings released."""
        if not self.enabled or self._madvise is None:
            return 0
        try:
            with open(self.maps_path, encoding="utf-8", errors="replace") as f:
                ranges = file_ranges(f.read(), os.path.realpath(path))
        except OSError:
            return 0
        return sum(end - start for start, end in ranges if self._madvise(start, end - start, MADV_DONTNEED) == 0)

    def while_filling(self, size: int, fill: Callable[[], T]) -> T:
        """Run `fill`, a native call that releases the GIL and allocates and zero-fills a buffer of
        exactly `size` bytes (llama.cpp creating a context), while a thread gives the buffer's pages
        back behind the fill: without it the whole cache is resident for the moment between the fill
        and release_zero_run, the process's peak. Call between snapshot and release_zero_run.

        Pages are given back without reading them, which is safe only because, until `fill`
        returns, nothing but the fill writes to that buffer and the fill writes zeros: a page given
        back reads as zeros again. So the buffer must be told apart for certain: the one new
        mapping of exactly its size (plus the allocator's page); one merged with a neighbour, of any
        other size, or a second candidate means nothing is touched until release_zero_run, which
        reads what it gives back."""
        if self._before is None or self._madvise is None or size < MIN_RANGE:
            return fill()  # no snapshot (a GPU's cache): nothing to tell the buffer apart by
        done = threading.Event()
        chaser = threading.Thread(target=self._chase, args=(size, done), name="kv-pages", daemon=True)
        chaser.start()
        try:
            return fill()
        finally:
            done.set()
            chaser.join()

    def _chase(self, size: int, done: threading.Event) -> None:
        assert self._madvise is not None
        region: tuple[int, int] | None = None
        while not done.wait(CHASE_S):
            if region is None:
                new = new_ranges(self._before or [], self._read())
                found = [(a, b) for a, b in new if size <= b - a <= size + 2 * PAGE]
                if len(found) != 1:
                    continue
                # The allocator's header shares the first page, and the last may hold its slack: both left.
                region = (found[0][0] + PAGE, found[0][1] - found[0][0] - 2 * PAGE)
                self._madvise(region[0], region[1], MADV_NOHUGEPAGE)
            self._madvise(region[0], region[1], MADV_DONTNEED)
