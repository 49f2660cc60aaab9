"""Admin operations: one interface (ops), its checks, and its two reaches: in process (local) and over HTTP (remote)."""
