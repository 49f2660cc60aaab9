"""The offline model tool: measure a GGUF, make the optimised copy, gate it on quality, pick the file to serve."""
