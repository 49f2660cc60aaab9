"""LoRA adapters on the one model: GGUF files, each named for the specialist it serves.

llama.cpp applies adapters to a whole context, not per row, so the scheduler decodes one adapter set
per step (adapter_turns.py). Every load gets a new key: cells computed under one adapter
(a slot's history, a saved preamble) are tagged with it and never taken for another's prompt.
An adapter replaced or removed while requests still use it is freed once none does.
Only the scheduler thread calls these, or the loader before the scheduler starts.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field

import llama_cpp as ll
from llama_cpp import _logger as ll_logger

from appliance.engine.native.llama import Context, Model

# The key of "no adapter": the base model's cells.
BASE = 0


class AdapterError(ValueError):
    """An adapter file that cannot serve this model; the message is one line for the admin."""


@dataclass
class Adapter:
    name: str
    path: str
    scale: float
    key: int
    nbytes: int
    handle: object = field(repr=False)


class _NativeLog:
    """llama.cpp's log lines while it loads an adapter: its reason for refusing one is only printed.
    The callback is process-wide, so loads take turns (the lock) and llama-cpp-python's is put back."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.lines: list[str] = []

        @ll.llama_log_callback
        def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            self.lines.append(text.decode("utf-8", "replace"))

        self._callback = collect

    def __enter__(self) -> _NativeLog:
        self._lock.acquire()
        ll.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        ll.llama_log_set(ll_logger.llama_log_callback, ctypes.c_void_p(0))
        self._lock.release()

    def reason(self) -> str:
        """llama.cpp's last error, without its function-name prefix."""
        text = "".join(self.lines)
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line:
                _, sep, rest = line.partition(": ")
                return (rest if sep and line.startswith("llama_") else line).rstrip(".")
        return "llama.cpp gave no reason"


class Adapters:
    def __init__(self, model: Model) -> None:
        self._model = model
        self._by_name: dict[str, Adapter] = {}
        self._retired: list[Adapter] = []
        self._next_key = 1
        self._applied: dict[int, int] = {}  # id(context) -> the key it has set

    def load(self, name: str, path: str, scale: float = 1.0) -> Adapter:
        """Load `path` as `name`'s adapter (replacing any it had); AdapterError if it cannot serve this model."""
        if not os.path.isfile(path):
            raise AdapterError(f"adapter file not found: {path}")
        if not scale > 0:
            raise AdapterError(f"adapter scale must be above 0, not {scale}")
        with _NativeLog() as native:
            handle = ll.llama_adapter_lora_init(self._model.ptr, os.fsencode(path))
        if not handle:
            raise AdapterError(f"{path} is not a LoRA adapter for this model: {native.reason()}")
        adapter = Adapter(name, path, scale, self._next_key, os.path.getsize(path), handle)
        self._next_key += 1
        self.remove(name)
        self._by_name[name] = adapter
        return adapter

    def remove(self, name: str) -> bool:
        adapter = self._by_name.pop(name, None)
        if adapter is not None:
            self._retired.append(adapter)
        return adapter is not None

    def key(self, name: str) -> int:
        adapter = self._by_name.get(name)
        return adapter.key if adapter is not None else BASE

    @property
    def retiring(self) -> bool:
        """Whether any replaced or removed adapter waits to be freed."""
        return bool(self._retired)

    def loaded(self) -> list[Adapter]:
        return sorted(self._by_name.values(), key=lambda a: a.name)

    def apply(self, ctx: Context, key: int) -> None:
        """Set `key`'s adapter on the context (none for BASE), if it has another set."""
        if self._applied.get(id(ctx), BASE) == key:
            return
        adapter = next((a for a in (*self._by_name.values(), *self._retired) if a.key == key), None)
        if adapter is None and key != BASE:
            raise KeyError(f"no adapter with key {key}")
        if adapter is None:
            rc = ll.llama_set_adapters_lora(ctx.ptr, None, 0, None)
        else:
            handles = (ll.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
            rc = ll.llama_set_adapters_lora(ctx.ptr, handles, 1, (ctypes.c_float * 1)(adapter.scale))
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not set the adapter on the context ({rc})")
        self._applied[id(ctx)] = key

    def collect(self, in_use: set[int], contexts: list[Context]) -> list[int]:
        """Free retired adapters no request uses any more (first unset from any context holding one);
        returns their keys."""
        freed = []
        for adapter in [a for a in self._retired if a.key not in in_use]:
            for ctx in contexts:
                if self._applied.get(id(ctx)) == adapter.key:
                    self.apply(ctx, BASE)
            ll.llama_adapter_lora_free(adapter.handle)
            self._retired.remove(adapter)
            freed.append(adapter.key)
        return freed

    def close(self, contexts: list[Context]) -> None:
        """Before the contexts and model are freed."""
        self._retired.extend(self._by_name.values())
        self._by_name.clear()
        self.collect(set(), contexts)
