"""Alveare: an on-prem LLM inference appliance with an OpenAI-compatible API."""

__version__ = "0.1.0"
