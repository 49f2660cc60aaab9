"""Write the first N layers of a llama-architecture GGUF (same vocabulary, tokenizer and metadata):
a model small enough to travel in one device call that still loads, tokenizes and serves (its
text is nonsense). Uses gguf-py from the llama-cpp-python sdist:

  python cut_layers.py SRC.gguf OUT.gguf N SDIST/vendor/llama.cpp/gguf-py
"""

from __future__ import annotations

import importlib
import sys


def main(src: str, dst: str, keep: int, gguf_py: str) -> None:
    sys.path.insert(0, gguf_py)
    gguf = importlib.import_module("gguf")
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = keep if field.name == f"{arch}.block_count" else field.contents()
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    tensors = [t for t in reader.tensors if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < keep]
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    print(f"{dst}: {keep} layers, {len(tensors)} tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
