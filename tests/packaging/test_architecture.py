"""The dependency direction holds: the API imports no llama_cpp until an engine starts."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest


def test_importing_the_api_does_not_load_llama_cpp() -> None:
    code = "import sys, appliance.api, appliance.engine.engine, appliance.__main__; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_serve_process_keeps_pydantic_out(server) -> None:
    """The openai SDK in this venv brings pydantic, and Litestar loads its pydantic plugin wherever
    pydantic imports (about 8 MB); `alveare serve` declares no pydantic types and blocks it."""
    pytest.importorskip("pydantic")
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "pydantic" not in maps
    assert "libllama" in maps  # the right process: the server with its engine loaded


def test_import_contracts() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_files_have_unique_basenames() -> None:
    """The test folders are not packages, so pytest over all of tests/ (the README's test command)
    stops with 'import file mismatch' when two test files share a name."""
    tests = Path(__file__).parents[1]
    names = [p.name for p in tests.rglob("test_*.py") if "node_modules" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_serving_is_kept_from_every_engine_module() -> None:
    """The contract that keeps serving to the engine's protocol lists the engine's modules and subpackages one by one
    (import-linter has no wildcard with exceptions): a new one must be on that list."""
    root = Path(__file__).parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    contract = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["appliance.serving"]
    )
    allowed = {"__init__", "interface", "grammars"}
    engine = root / "appliance" / "engine"
    packages = {p.parent.name for p in engine.glob("*/__init__.py")}
    modules = ({p.stem for p in engine.glob("*.py")} | packages) - allowed
    hive = "appliance.engine."
    listed = {m.removeprefix(hive) for m in contract["forbidden_modules"] if m.startswith(hive)}
    assert listed == modules
