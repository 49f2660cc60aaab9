"""`alveare serve` start-up failures with the real engine: one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from live import ALVEARE, free_port


def serve(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALVEARE_DATA_DIR": str(data)}
    return subprocess.run(
        [*ALVEARE, "serve", "--port", str(free_port()), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_model_that_fails_to_load_stops_the_server(tmp_path: Path) -> None:
    """A file that passes the pre-check (GGUF signature) but that llama.cpp cannot load: the
    process exits non-zero with one clear line instead of answering 503 "still loading" forever."""
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 16)
    result = serve(tmp_path / "data", "--model", str(corrupt))
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("alveare: error: could not load the model") and str(corrupt) in line
    assert "Traceback" not in result.stderr


def test_a_missing_model_stops_serve_before_it_listens(tmp_path: Path) -> None:
    result = serve(tmp_path / "data", "--model", "/nope.gguf")
    assert result.returncode == 2
    assert result.stderr == "alveare: error: model file not found: /nope.gguf\n"
    assert "Listening" not in result.stdout and not (tmp_path / "data").exists()
