"""What shape an answer must have, as a grammar for the engine's sampler: the request's
response_format (json_object, json_schema), its `labels`, or the specialist's profile (labels,
json_schema, output = "json", a grammar of its own). Compiled and checked before admission, so a bad
schema is a 400 that is never metered; compiled grammars are remembered.

Also the token-level sampling options that need the model's vocabulary: logprobs and logit_bias."""

from __future__ import annotations

import json
import re
from collections import OrderedDict

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest, ServerError
from appliance.core.specialists import Specialist
from appliance.engine.grammars import JSON_OBJECT, choice_grammar
from appliance.engine.interface import Engine

MEMO = 128
MAX_TOP_LOGPROBS = 20
MAX_LEGACY_LOGPROBS = 5
MAX_LOGIT_BIAS = 300
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Shapes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._memo: OrderedDict[str, str] = OrderedDict()

    def _schema_grammar(self, schema: dict, param: str) -> str:
        key = json.dumps(schema, sort_keys=True)
        grammar = self._memo.get(key)
        if grammar is None:
            grammar = self.engine.json_schema_grammar(schema, param=param)
            self._memo[key] = grammar
            if len(self._memo) > MEMO:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return grammar

    def _own_grammar(self, grammar: str, name: str) -> str:
        key = "gbnf:" + grammar
        if key not in self._memo:
            try:
                self.engine.check_grammar(grammar)
            except InvalidRequest as exc:
                # The admin's specialists file, not the client's request: a server-side fault.
                raise ServerError(
                    f"The specialist '{name}' has a grammar llama.cpp cannot use: {exc.message}"
                ) from None
            self._memo[key] = grammar
        return grammar

    def response_format(self, fmt: p.ResponseFormat | None) -> str | None:
        """The grammar for OpenAI's response_format, or None for free text."""
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return JSON_OBJECT
        spec = fmt.json_schema
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "response_format.json_schema is required when type is 'json_schema'.",
                param="response_format.json_schema",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
            raise InvalidRequest(
                "response_format.json_schema.name is required: letters, digits, '_' or '-', at most 64.",
                param="response_format.json_schema.name",
            )
        schema = spec.get("schema")
        if schema is None:
            return JSON_OBJECT
        return self._schema_grammar(schema, "response_format.json_schema.schema")

    def labels(self, labels: list[str] | None, param: str = "labels") -> list[str] | None:
        if labels is None:
            return None
        if not labels or len(labels) > 100:
            raise InvalidRequest("labels must list 1 to 100 labels.", param=param)
        for i, label in enumerate(labels):
            if not label.strip() or len(label) > 100:
                raise InvalidRequest(f"labels[{i}] must be 1 to 100 characters.", param=f"{param}[{i}]")
        if len(set(labels)) != len(labels):
            raise InvalidRequest("labels must be distinct.", param=param)
        return labels

    def grammar(
        self, specialist: Specialist, fmt: p.ResponseFormat | None, labels: list[str] | None
    ) -> tuple[str | None, list[str]]:
        """(grammar, the labels it allows): the request's response_format, else its labels, else the profile's shape."""
        if fmt is not None and fmt.type != "text":
            return self.response_format(fmt), []
        chosen = self.labels(labels) or specialist.labels
        if chosen:
            return choice_grammar(chosen), list(chosen)
        if specialist.json_schema is not None:
            return self._schema_grammar(specialist.json_schema, "model"), []
        if specialist.output == "json":
            return JSON_OBJECT, []
        if specialist.grammar:
            return self._own_grammar(specialist.grammar, specialist.name), []
        return None, []

    def logit_bias(self, bias: dict[str, float] | None) -> dict[int, float]:
        """OpenAI's logit_bias: token ids (as strings) to -100..100, checked against the vocabulary."""
        if not bias:
            return {}
        if len(bias) > MAX_LOGIT_BIAS:
            raise InvalidRequest(f"logit_bias may hold at most {MAX_LOGIT_BIAS} tokens.", param="logit_bias")
        vocab = self.engine.vocab_size
        out: dict[int, float] = {}
        for key, value in bias.items():
            if not key.strip().isdigit() or int(key) >= vocab:
                raise InvalidRequest(
                    f"logit_bias keys must be token ids from 0 to {vocab - 1}; '{key[:20]}' is not.", param="logit_bias"
                )
            if not -100 <= value <= 100:
                raise InvalidRequest(
                    f"logit_bias values must be between -100 and 100; token {key} has {value}.", param="logit_bias"
                )
            out[int(key)] = float(value)
        return out


def chat_logprobs(logprobs: bool | None, top: int | None) -> int | None:
    """The engine's logprobs setting for a chat request (None: off)."""
    if top is not None and not logprobs:
        raise InvalidRequest("top_logprobs needs logprobs set to true.", param="top_logprobs")
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}.", param="top_logprobs")
    return (top or 0) if logprobs else None


def legacy_logprobs(logprobs: int | None) -> int | None:
    if logprobs is None:
        return None
    if not 0 <= logprobs <= MAX_LEGACY_LOGPROBS:
        raise InvalidRequest(f"logprobs must be between 0 and {MAX_LEGACY_LOGPROBS}.", param="logprobs")
    return logprobs
