"""Machine tuning: each piece behind its own setting and one seam into the engine."""
