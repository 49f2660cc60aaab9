"""Specialists: load and validate specialists.toml, and resolve model names. Pure."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from appliance.core.errors import ConfigError, ModelNotFound, NotFound

MODEL_PREFIX = "alveare-"
ECHO_CHARS = 100
# The largest scale an adapter is applied at (specialists.toml's adapter_scale, the admin API's scale).
MAX_ADAPTER_SCALE = 10.0
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# OpenAI's pinned snapshots: gpt-4o-2024-08-06, gpt-3.5-turbo-0125, gpt-4-1106-preview. Migrated code
# pins them; they resolve through the alias of their base name.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})(?:-preview)?$")


class Example(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A worked example, sent as a user turn and the ideal assistant answer (few-shot)."""

    user: str
    assistant: str


class Specialist(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    system_prompt: str
    description: str = ""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 512
    stop: list[str] = []
    # Few-shot turns placed after the system prompt; part of the cached, shared prefix.
    examples: list[Example] = []
    # Speculative decoding by prompt lookup, for specialists whose answers copy spans of the input.
    prompt_lookup: bool = False
    # What a caller's own system message does: "append" keeps this specialist's prompt first and adds
    # the caller's after it (task specialists); "replace" uses the caller's instead, so the prompt is
    # only a default (a general assistant, where OpenAI models have no persona of their own).
    caller_system: Literal["append", "replace"] = "append"
    # What shape the answer must have, enforced by a grammar while sampling (at most one of these):
    # `labels`: exactly one of them (a request may narrow them with its own `labels`);
    # `json_schema`: one JSON object valid against it; `output = "json"`: any JSON object;
    # `grammar`: a GBNF grammar of your own (root rule `root`). A request's response_format wins.
    labels: list[str] = []
    json_schema: dict | None = None
    output: Literal["text", "json"] = "text"
    grammar: str | None = None
    # A LoRA adapter (a GGUF file, relative to this file's folder) fine-tuned on the served base model,
    # applied at `adapter_scale`: the specialist decodes under it, beside the others on the same weights.
    adapter: str | None = None
    adapter_scale: Annotated[float, msgspec.Meta(gt=0, le=MAX_ADAPTER_SCALE)] = 1.0

    @property
    def model_id(self) -> str:
        return MODEL_PREFIX + self.name


class Specialists:
    """The loaded catalogue: specialists by name, plus OpenAI-name aliases."""

    def __init__(self, specialists: dict[str, Specialist], aliases: dict[str, str], source: str) -> None:
        self.by_name = specialists
        self.aliases = aliases
        self.source = source

    def __iter__(self):
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def alias_target(self, model: str) -> str | None:
        """The specialist an OpenAI model name maps to: the name itself, or a dated snapshot's base name."""
        return self.aliases.get(model) or self.aliases.get(_SNAPSHOT.sub("", model))

    def resolve(self, model: str, *, param: str = "model") -> Specialist:
        """`summarise`, `alveare-summarise` or a mapped OpenAI name (dated or not); anything else is 404."""
        key = model.strip()
        name = key.removeprefix(MODEL_PREFIX)
        found = self.by_name.get(name) or self.by_name.get(self.alias_target(key) or "")
        if found is None:
            # Echo at most ECHO_CHARS of what the client sent: a 10,000-character name is not repeated back.
            shown = model if len(model) <= ECHO_CHARS else model[:ECHO_CHARS] + "…"
            raise ModelNotFound(
                f"The model '{shown}' does not exist. Use one of: "
                + ", ".join(s.model_id for s in self.by_name.values())
                + ".",
                param=param,
            )
        return found

    def named(self, name: str, *, param: str = "specialist") -> Specialist:
        """The specialist an admin names (by any name `resolve` takes); 404 specialist_not_found listing them."""
        try:
            return self.resolve(name, param=param)
        except NotFound:
            raise NotFound(
                f"No specialist named {name!r}. Specialists: {', '.join(s.name for s in self)}.",
                param=param,
                code="specialist_not_found",
            ) from None


def default_path() -> Path:
    return Path(str(resources.files("appliance") / "specialists.toml"))


def _line_of(text: str, table: str, key: str | None) -> int:
    """Best-effort line number of `key` inside `[table]` (or of the table header) for messages."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
    for i, line in enumerate(lines):
        if header.match(line):
            if key is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if lines[j].lstrip().startswith("["):
                    break
                if re.match(r"^\s*\"?" + re.escape(key) + r"\"?\s*=", lines[j]):
                    return j + 1
            return i + 1
    return 1


def load_specialists(path: Path | None = None) -> Specialists:
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the specialists file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None

    def fail(table: str, key: str | None, problem: str) -> ConfigError:
        return ConfigError(f"{path}, line {_line_of(text, table, key)}: [{table}] {problem}")

    unknown = set(data) - {"specialists", "aliases"}
    if unknown:
        return_err = sorted(unknown)[0]
        raise ConfigError(
            f"{path}: unknown top-level table or key '{return_err}' (expected [specialists.*] and [aliases])"
        )
    tables = data.get("specialists")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: no [specialists.NAME] tables found")
    specialists: dict[str, Specialist] = {}
    for name, table in tables.items():
        where = f"specialists.{name}"
        if not _NAME.match(name):
            raise fail(where, None, "a specialist name is lower-case letters, digits, '-' or '_' (at most 32)")
        if not isinstance(table, dict):
            raise fail(where, None, "must be a table of settings")
        try:
            spec = msgspec.convert({**table, "name": name}, Specialist)
        except msgspec.ValidationError as exc:
            message = str(exc)
            field = re.search(r"at `\$\.([A-Za-z_]+)", message)
            key = field.group(1) if field else None
            if key is None and "missing required field" in message:
                key = None
            elif key is None:
                unknown_field = re.search(r"unknown field `([^`]+)`", message)
                key = unknown_field.group(1) if unknown_field else None
            raise fail(where, key, message) from None
        if not spec.system_prompt.strip():
            raise fail(where, "system_prompt", "system_prompt must not be empty")
        shapes = [k for k in ("labels", "json_schema", "grammar") if getattr(spec, k)]
        shapes += ["output"] if spec.output != "text" else []
        if len(shapes) > 1:
            raise fail(where, shapes[1], f"give at most one of labels, json_schema, output and grammar, not {shapes}")
        if spec.adapter is not None:
            adapter = (path.parent / Path(spec.adapter).expanduser()).resolve()
            if not adapter.is_file():
                raise fail(where, "adapter", f"adapter file not found: {adapter}")
            spec = msgspec.structs.replace(spec, adapter=str(adapter))
        labels = spec.labels
        if len(set(labels)) != len(labels) or any(not label.strip() or len(label) > 100 for label in labels):
            raise fail(where, "labels", "labels must be distinct, non-empty and at most 100 characters each")
        specialists[name] = spec
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict):
        raise ConfigError(f"{path}: [aliases] must map model names to specialist names")
    for alias, target in aliases.items():
        if target not in specialists:
            raise fail("aliases", alias, f"'{alias}' maps to '{target}', which is not a specialist")
    return Specialists(specialists, dict(aliases), str(path))


def with_overrides(
    specialist: Specialist,
    *,
    system_prompt: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
) -> Specialist:
    """The specialist with an admin's overrides applied (None keeps the file's value). Pure."""
    changes = {
        "system_prompt": system_prompt,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    return msgspec.structs.replace(specialist, **changes) if changes else specialist
