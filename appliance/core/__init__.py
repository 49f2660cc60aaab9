"""The leaves every layer stands on: settings, errors, security, specialists, limits, TLS, wire protocol, preflight."""
