"""LoRA adapters set on specialists at run time (the admin API, `alveare specialists adapter set`).

An adapter an admin sends is kept in the data dir (`adapters/NAME-SHA.gguf`, with `NAME.json` naming
the file and its scale), loaded on the engine at once, and at every start over the one
specialists.toml gives the specialist, if any. Cleared, the specialist goes back to the file's
adapter, or to none. The engine loads a file before it is kept: one that cannot serve the model
is refused (400, llama.cpp's reason) and removed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from pathlib import Path

import msgspec

from appliance.core.errors import InvalidRequest
from appliance.core.specialists import MAX_ADAPTER_SCALE, Specialist, Specialists
from appliance.engine.interface import AdapterFile, AdapterStatus, Engine
from appliance.store import Store, clock

ADAPTER_DIR = "adapters"


class KeptAdapter(msgspec.Struct, frozen=True):
    file: str  # the adapter's file name in the adapters folder
    scale: float
    sha256: str
    set_at: str


class AdapterDir:
    """The data dir's adapters folder. Blocking file work: callers run it off the event loop."""

    def __init__(self, data_path: Path) -> None:
        self.root = data_path / ADAPTER_DIR

    def kept(self) -> dict[str, AdapterFile]:
        """The adapters kept here, by specialist; a record whose file is gone is skipped."""
        if not self.root.is_dir():
            return {}
        found = {}
        for record in sorted(self.root.glob("*.json")):
            try:
                kept = msgspec.json.decode(record.read_bytes(), type=KeptAdapter)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            path = self.root / kept.file
            if path.is_file():
                found[record.stem] = AdapterFile(str(path), kept.scale)
        return found

    def receive(self, name: str, data: bytes) -> tuple[Path, str]:
        """Write an adapter's bytes under a name of their digest (owner-only); returns its path and
        the SHA-256."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / f"{name}-{digest[:12]}.gguf"
        tmp = self.root / f".{name}-{secrets.token_hex(4)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return path, digest

    def keep(self, name: str, path: Path, sha256: str, scale: float, set_at: str) -> None:
        """Record `path` (its bytes' SHA-256) as `name`'s adapter, and remove the file it had before."""
        before = self.kept().get(name)
        record = KeptAdapter(path.name, scale, sha256, set_at)
        tmp = self.root / f".{name}.json.part"
        tmp.write_bytes(msgspec.json.encode(record))
        os.replace(tmp, self.root / f"{name}.json")
        if before is not None and Path(before.path) != path:
            Path(before.path).unlink(missing_ok=True)

    def discard(self, name: str, path: Path) -> None:
        """Remove a file received for `name` that is not its kept one (the same bytes sent again are)."""
        kept = self.kept().get(name)
        if kept is None or Path(kept.path) != path:
            path.unlink(missing_ok=True)

    def drop(self, name: str) -> bool:
        before = self.kept().get(name)
        (self.root / f"{name}.json").unlink(missing_ok=True)
        if before is not None:
            Path(before.path).unlink(missing_ok=True)
        return before is not None


def declared(specialist: Specialist) -> AdapterFile | None:
    """The adapter specialists.toml gives the specialist, if any."""
    return AdapterFile(specialist.adapter, specialist.adapter_scale) if specialist.adapter else None


def startup_adapters(specialists: Specialists, data_path: Path) -> dict[str, AdapterFile]:
    """What the engine loads at start: specialists.toml's adapters, with those set at run time over them."""
    adapters = {s.name: file for s in specialists if (file := declared(s)) is not None}
    kept = AdapterDir(data_path).kept()
    return adapters | {name: file for name, file in kept.items() if name in specialists.by_name}


class SpecialistAdapters:
    def __init__(self, engine: Engine, specialists: Specialists, store: Store, data_path: Path) -> None:
        self.engine = engine
        self.specialists = specialists
        self.store = store
        self.dir = AdapterDir(data_path)

    async def set(self, name: str, data: bytes, scale: float, *, actor: str) -> AdapterStatus:
        specialist = self.specialists.named(name)
        if not data:
            raise InvalidRequest("Send the adapter's GGUF file as the request body.", param="file")
        if not 0 < scale <= MAX_ADAPTER_SCALE:
            raise InvalidRequest(
                f"scale must be above 0 and at most {MAX_ADAPTER_SCALE:g}, not {scale:g}.", param="scale"
            )
        path, sha256 = await asyncio.to_thread(self.dir.receive, specialist.name, data)
        try:
            loaded = await self.engine.set_adapter(specialist.name, AdapterFile(str(path), scale))
        except BaseException:
            await asyncio.to_thread(self.dir.discard, specialist.name, path)
            raise
        await asyncio.to_thread(self.dir.keep, specialist.name, path, sha256, scale, clock.now_iso())
        change = {"adapter": {"sha256": sha256, "bytes": len(data)}, "scale": scale}
        await asyncio.to_thread(self.store.record_audit, actor, "specialist.adapter.set", specialist.name, change)
        return loaded

    async def clear(self, name: str, *, actor: str) -> AdapterStatus | None:
        """Drop the adapter set at run time: back to specialists.toml's (returned), or to none."""
        specialist = self.specialists.named(name)
        dropped = await asyncio.to_thread(self.dir.drop, specialist.name)
        file = declared(specialist)
        if file is not None:
            status = await self.engine.set_adapter(specialist.name, file)
        else:
            await self.engine.remove_adapter(specialist.name)
            status = None
        if dropped:
            await asyncio.to_thread(self.store.record_audit, actor, "specialist.adapter.clear", specialist.name, {})
        return status
