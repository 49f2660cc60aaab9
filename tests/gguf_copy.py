"""Copies of a GGUF with other metadata (the `gguf` package writes them): the embedded model with
another family's chat template, or with none."""

from __future__ import annotations

from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata


def copy_gguf(source: str, target: Path, *, template: str | None = None, remove: tuple[str, ...] = ()) -> Path:
    """`source` written to `target` with `template` as its chat template (if given), without the keys in
    `remove`; weights and every other key as they were."""
    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(target), arch=arch, endianess=reader.endianess)
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    new: dict[str, MetadataDetails] = {}
    if template is not None:
        new[gguf.Keys.Tokenizer.CHAT_TEMPLATE] = MetadataDetails(gguf.GGUFValueType.STRING, template)
    copy_with_new_metadata(reader, writer, new, list(remove))
    return target
