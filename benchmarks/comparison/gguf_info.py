"""A GGUF file's quantisation, read from its header (no llama.cpp load): the file type it
declares (general.file_type) and how many tensors of each type it holds, for the report's note
on the optimised model."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import BinaryIO

# llama_ftype and ggml_type numbers, as llama.cpp (vendored in llama-cpp-python 0.3.36) has them
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip
TENSOR_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
    34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip
# GGUF value types with a fixed size: their struct format
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack("<" + fmt, data)[0]


def _string(fh: BinaryIO) -> str:
    return fh.read(_read(fh, "Q")).decode(errors="replace")


def _value(fh: BinaryIO, vtype: int):
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(fh)
    if vtype == _ARRAY:
        etype, count = _read(fh, "I"), _read(fh, "Q")
        if etype in _SCALARS:  # skip over it: only the scalars at the top level matter here
            fh.seek(count * struct.calcsize("<" + _SCALARS[etype]), 1)
        else:
            for _ in range(count):
                _value(fh, etype)
        return None
    raise ValueError(f"unknown GGUF value type {vtype}")


def quant_summary(path: Path) -> dict:
    """{"file_type": "Q4_0", "tensor_types": {"Q4_0": 210, "F32": 61, ...}} for a GGUF file
    (version 2 or later); ValueError when it is not one."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        if _read(fh, "I") < 2:
            raise ValueError(f"{path}: GGUF version 1 is not supported")
        n_tensors, n_kv = _read(fh, "Q"), _read(fh, "Q")
        file_type = None
        for _ in range(n_kv):
            key = _string(fh)
            value = _value(fh, _read(fh, "I"))
            if key == "general.file_type":
                file_type = value
        counts: Counter[str] = Counter()
        for _ in range(n_tensors):
            _string(fh)
            fh.seek(8 * _read(fh, "I"), 1)  # the dimensions
            ttype = _read(fh, "I")
            _read(fh, "Q")  # the data offset
            counts[TENSOR_TYPES.get(ttype, f"type {ttype}")] += 1
    return {
        "file_type": FILE_TYPES.get(file_type, f"type {file_type}") if file_type is not None else "unknown",
        "tensor_types": dict(counts.most_common()),
    }


def file_type(path: Path) -> str:
    """The file type the GGUF declares ('Q4_1'), or 'unknown' when it cannot be read."""
    try:
        return quant_summary(path)["file_type"]
    except (OSError, ValueError):
        return "unknown"


def describe(path: Path) -> str:
    """'name.gguf (Q4_0; tensors: 211 Q4_0, 61 F32)', or the name and why it could not be read."""
    try:
        q = quant_summary(path)
    except (OSError, ValueError) as exc:
        return f"{path.name} (quantisation unknown: {exc})"
    tensors = ", ".join(f"{n} {t}" for t, n in q["tensor_types"].items())
    return f"{path.name} ({q['file_type']}; tensors: {tensors})"
