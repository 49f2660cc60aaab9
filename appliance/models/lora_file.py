"""GGUF LoRA adapters as llama.cpp loads them, written with the `gguf` package (a test and training
dependency, not the server's): an adapter from (A, B) pairs, random ones for tests and benchmarks,
and an all-F32 copy of a model, with an adapter merged into its weights where given, to check what
llama.cpp applies against.

llama.cpp's layout: for a weight `<name>` of n_out x n_in, `<name>.lora_a` is rank x n_in and
`<name>.lora_b` n_out x rank (numpy order); the update is alpha / rank * B @ A.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


def architecture(reader: gguf.GGUFReader) -> str:
    return str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())


def random_pairs(
    reader: gguf.GGUFReader, rank: int, *, targets: tuple[str, ...] = ("attn_q", "attn_v"), seed: int = 7
) -> Pairs:
    """Random (A, B) for every block's `targets` weights of the model `reader` reads."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for t in reader.tensors:
        if t.name.split(".")[-2] in targets:
            n_in, n_out = int(t.shape[0]), int(t.shape[1])
            a = rng.normal(0, 1 / np.sqrt(n_in), (rank, n_in)).astype(np.float32)
            b = rng.normal(0, 0.05, (n_out, rank)).astype(np.float32)
            pairs[t.name] = (a, b)
    return pairs


def write_adapter(pairs: Pairs, arch: str, alpha: float, path: Path) -> None:
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    for name, (a, b) in pairs.items():
        w.add_tensor(name + ".lora_a", a)
        w.add_tensor(name + ".lora_b", b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_f32(reader: gguf.GGUFReader, path: Path, merged: Pairs | None = None, alpha: float = 0.0) -> None:
    """The model with every weight in F32 (no activation is quantised on the way, so an adapter applied
    and one merged give the same logits), with `merged` added to its weights where given."""
    w = gguf.GGUFWriter(str(path), arch=architecture(reader), endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        weights = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if merged is not None and t.name in merged:
            a, b = merged[t.name]
            weights = weights + (alpha / a.shape[0]) * (b @ a)
        w.add_tensor(t.name, weights)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
