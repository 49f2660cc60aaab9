"""The hive engine: one llama.cpp model serving every specialist with continuous batching.

Importing this package is cheap: llama_cpp is imported only when an engine starts, so the
API can be imported, and tested, without loading the native library.
"""

from appliance.engine.interface import (
    EngineConfig,
    EngineStatus,
    Finished,
    Generation,
    GenerationRequest,
    SamplingParams,
)

__all__ = ["EngineConfig", "EngineStatus", "Finished", "Generation", "GenerationRequest", "SamplingParams"]
