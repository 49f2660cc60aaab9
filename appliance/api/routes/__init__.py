"""The route handlers, one module per surface: openai, native, admin, status, health, sdk."""
