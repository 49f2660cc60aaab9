"""The server's OpenAPI schema for the TypeScript SDK's wire types.

Writes sdk/typescript/openapi.json (the schema /schema/openapi.json serves), then `npm run generate`
makes src/openapi.ts from it with openapi-typescript; src/types.ts names the wire types from there.
Run after changing a wire type, from the repository root in the development venv:

    python sdk/typescript/scripts/openapi_schema.py

tests/sdk/test_typescript_types.py fails while the committed files differ from what this makes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

TS = Path(__file__).resolve().parents[1]
ROOT = TS.parents[1]


def schema() -> dict:
    """The schema of an app with the default settings: the routes and wire types make it, not the
    data dir (a throwaway one) or the model (an engine that is never started)."""
    sys.path.insert(0, str(ROOT))
    from appliance.api import create_app
    from appliance.core.settings import Settings
    from appliance.core.specialists import load_specialists
    from appliance.engine.engine import HiveEngine
    from appliance.engine.interface import EngineConfig
    from appliance.store import Store

    with tempfile.TemporaryDirectory() as data:
        store = Store(Path(data))
        try:
            app = create_app(
                Settings(data_dir=data),
                engine=HiveEngine(EngineConfig(model_path="")),
                store=store,
                specialists=load_specialists(),
            )
            return app.openapi_schema.to_schema()
        finally:
            store.close()


def write_schema(path: Path) -> None:
    path.write_text(json.dumps(schema(), indent=2, ensure_ascii=False) + "\n")


def generate(schema_path: Path, out: Path) -> None:
    """What `npm run generate` makes of `schema_path`, written to `out`: the openapi-typescript that
    package.json pins, as npm installed it (`npm ci` in sdk/typescript)."""
    done = subprocess.run(
        [str(TS / "node_modules" / ".bin" / "openapi-typescript"), str(schema_path), "--output", str(out)],
        cwd=TS,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"openapi-typescript failed:\n{done.stdout}{done.stderr}")


if __name__ == "__main__":
    write_schema(TS / "openapi.json")
    generate(TS / "openapi.json", TS / "src" / "openapi.ts")
