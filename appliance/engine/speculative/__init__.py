"""Speculative decoding: drafting from the prompt (lookup) and its bookkeeping."""
