"""llama.cpp itself: the bindings wrapper, the native libraries, and the CPU-kernel choice and its check."""
