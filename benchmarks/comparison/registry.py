"""Every server the comparison can run, by the name `--servers` takes."""

from __future__ import annotations

from comparison.python_servers import LlamaCppPython, SdistExample
from comparison.servers import (
    Alveare,
    AlveareOptimized,
    AlveareOptimizedCopyOnly,
    AlveareSplit,
    AlveareUnified,
    LlamaServer,
    LlamaServerOptimized,
    LlamaServerSplit,
    LlamaServerSplitNoFlash,
    Server,
)

SERVER_CLASSES: dict[str, type[Server]] = {
    c.name: c
    for c in (
        Alveare,
        AlveareUnified,
        AlveareSplit,
        LlamaServer,
        LlamaServerSplit,
        LlamaServerSplitNoFlash,
        AlveareOptimized,
        AlveareOptimizedCopyOnly,
        LlamaServerOptimized,
        LlamaCppPython,
        SdistExample,
    )
}
