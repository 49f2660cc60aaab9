"""GBNF grammar text: literals, and rule names namespaced so that several grammars live in one."""

from __future__ import annotations

import json


def gbnf_literal(text: str) -> str:
    # A JSON string is a valid GBNF literal for these characters (quotes, backslashes, newlines).
    return json.dumps(text)


def namespace(grammar: str, prefix: str) -> str:
    """The grammar with every rule name prefixed, so several can live in one grammar; literals,
    character classes, repetition counts and comments stay as they are."""
    out: list[str] = []
    i, n = 0, len(grammar)
    while i < n:
        c = grammar[i]
        if c in '"[':
            end = '"' if c == '"' else "]"
            j = i + 1
            while j < n and grammar[j] != end:
                j += 2 if grammar[j] == "\\" else 1
            out.append(grammar[i : j + 1])
            i = j + 1
        elif c in "{#":
            j = grammar.find("}" if c == "{" else "\n", i)
            j = n - 1 if j < 0 else j
            out.append(grammar[i : j + 1] if c == "{" else "\n")
            i = j + 1
        elif c.isascii() and (c.isalnum() or c in "-_"):
            j = i
            while j < n and grammar[j].isascii() and (grammar[j].isalnum() or grammar[j] in "-_"):
                j += 1
            out.append(prefix + grammar[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)
