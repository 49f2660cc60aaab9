"""Start-up: what `serve` loads and how it listens (plan, pure), the facts the plan reads, the data
dir's first-run setup (init), the first start's optimised copy (first_start), and the run (server)."""
