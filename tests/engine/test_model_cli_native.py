"""`alveare model show|optimize` where llama.cpp itself runs: `show` on a data dir with no reports (it
reads the embedded model), and a GGUF llama.cpp cannot load (the CPU kernel check's child says so
first). The errors found before anything loads are tests/unit/test_model_cli.py."""

from __future__ import annotations

from pathlib import Path

from appliance.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_with_nothing_recorded(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "--data-dir", str(tmp_path), "model", "show")
    assert code == 0 and "No optimisation reports" in out
    code, out, _ = run(capsys, "--data-dir", str(tmp_path), "model", "show", "--json")
    assert code == 0 and out.strip() == "[]"


def test_a_gguf_that_llama_cpp_cannot_load_is_one_line(tmp_path: Path, capsys) -> None:
    model = tmp_path / "corrupt.gguf"
    model.write_bytes(b"GGUF" + bytes(256))  # passes the signature check, not llama.cpp's loader
    code, out, err = run(capsys, "--data-dir", str(tmp_path), "model", "optimize", "--model", str(model))
    assert code == 1 and out == "" and err.splitlines()[-1].startswith("alveare: error: could not optimise")
    assert "Traceback" not in err and str(model) in err.splitlines()[-1]
    assert not list((tmp_path / "models").glob("*"))
