"""GBNF grammars that make the output JSON, JSON following a schema, or one of a set of labels.

llama.cpp's grammar sampler makes every other token impossible, so the shape is guaranteed on any
model, the tiny embedded one included. The JSON Schema converter is llama.cpp's own (ported in
llama-cpp-python); keywords it would silently ignore are refused here, so a strict schema's
promise ("the output validates") is never broken quietly.
"""

from __future__ import annotations

import json

from appliance.core.errors import InvalidRequest

# Any JSON object: what response_format {"type": "json_object"} asks for.
JSON_OBJECT = r"""root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""

# JSON Schema keywords the converter does not enforce: a schema using them could be violated.
UNSUPPORTED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "multipleOf",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "$dynamicRef",
    }
)
# Keywords whose value is a map of property names to schemas (their keys are names, not keywords).
NAMED = frozenset({"properties", "$defs", "definitions"})
# Keywords whose value is data, not a schema.
LITERAL = frozenset({"enum", "const", "default", "examples", "description", "title", "required"})


def _unsupported(schema: object, path: str) -> tuple[str, str] | None:
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            if found := _unsupported(item, f"{path}[{i}]"):
                return found
        return None
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in UNSUPPORTED:
            return key, path
        if key in NAMED and isinstance(value, dict):
            for name, sub in value.items():
                if found := _unsupported(sub, f"{path}.{key}.{name}"):
                    return found
        elif key not in LITERAL and (found := _unsupported(value, f"{path}.{key}")):
            return found
    return None


def json_schema_grammar(schema: dict, *, param: str) -> str:
    """A grammar for JSON that validates against `schema`, or InvalidRequest naming what can't be expressed."""
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be an object.", param=param)
    if found := _unsupported(schema, param):
        keyword, where = found
        raise InvalidRequest(
            f"The JSON schema keyword '{keyword}' (at {where}) cannot be enforced by the grammar; "
            "remove it or use response_format json_object.",
            param=param,
        )
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return strict_strings(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise InvalidRequest(f"The JSON schema cannot be turned into a grammar: {detail[:300]}", param=param) from None


def strict_strings(grammar: str) -> str:
    """llama.cpp's converter lets raw control characters into strings, which strict JSON parsers
    (Python's, JavaScript's) refuse; keep them to their escapes, as the JSON object grammar does."""
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')


def choice_grammar(options: list[str]) -> str:
    """Exactly one of `options` (classify's labels)."""
    return "root ::= " + " | ".join(json.dumps(option, ensure_ascii=False) for option in options) + "\n"
