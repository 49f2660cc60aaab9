"""The parts of compare.py: servers (one class per kind), procs (a process tree's CPU and RSS,
stopping it), hog (the CPU hog of the contention scenarios), gguf_info (a model file's quant
type), scenarios (what runs, and running it) and report (medians, the anchor, markdown)."""
