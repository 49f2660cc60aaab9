"""The TypeScript SDK's wire types are generated from the server's OpenAPI schema
(sdk/typescript/scripts/openapi_schema.py writes openapi.json, openapi-typescript makes src/openapi.ts
of it): both committed files are made again here, into a temporary folder, and must be what is
committed. A changed wire type fails here until the script is run and its output committed."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

from node_project import npm_installed

TS = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
AGAIN = "the committed file is stale: run `python sdk/typescript/scripts/openapi_schema.py` and commit what it changes"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_schema", TS / "scripts" / "openapi_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_schema_is_the_servers(tmp_path: Path) -> None:
    generator().write_schema(tmp_path / "openapi.json")
    assert (tmp_path / "openapi.json").read_text() == (TS / "openapi.json").read_text(), AGAIN


def test_the_committed_types_are_generated_from_the_servers_schema(tmp_path: Path) -> None:
    npm_installed(TS, "generating the TypeScript SDK's types")
    gen = generator()
    gen.write_schema(tmp_path / "openapi.json")
    gen.generate(tmp_path / "openapi.json", tmp_path / "openapi.ts")
    assert (tmp_path / "openapi.ts").read_text() == (TS / "src" / "openapi.ts").read_text(), AGAIN


def test_the_sdk_names_its_wire_types_from_the_generated_file() -> None:
    """src/types.ts declares no wire shape of its own: every answer type is a name for a generated one."""
    types = (TS / "src" / "types.ts").read_text()
    for name in (
        "InferResponse",
        "ChatCompletion",
        "ModelList",
        "UsageReport",
        "Health",
        "SpecialistList",
        "HiveStatus",
    ):
        assert f"export type {name} = Schemas['{name}'];" in types, name
        assert f"export interface {name} " not in types, name


# A TypeScript file that must type-check against the SDK's types: the answers' constant fields are
# literal types (a switch on `object` or `finish_reason` narrows), so a wrong constant is an error.
LITERALS = """
import type { ChatCompletion, Completion, ModelList } from 'TYPES';

export function kinds(chat: ChatCompletion, legacy: Completion, models: ModelList): string[] {
  const object: 'chat.completion' = chat.object;
  const reason: 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call' = chat.choices[0].finish_reason;
  // @ts-expect-error a chat completion's object is no other constant
  const wrong: 'chat.completion.chunk' = chat.object;
  const list: 'list' = models.object;
  const model: 'model' = models.data[0].object;
  const text: 'text_completion' = legacy.object;
  return [object, reason, wrong, list, model, text];
}
"""


def test_the_answers_constants_are_literal_types(tmp_path: Path) -> None:
    npm_installed(TS, "type-checking the TypeScript SDK")
    check = tmp_path / "literals.ts"
    check.write_text(LITERALS.replace("TYPES", (TS / "src" / "types.js").as_posix()))
    tsc = TS / "node_modules" / "typescript" / "bin" / "tsc"
    args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "ES2020", "--moduleResolution", "bundler"]
    result = subprocess.run(["node", str(tsc), *args, str(check)], cwd=TS, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
