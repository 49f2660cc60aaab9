"""`alveare model optimize|show`: a bad model file or a missing data dir is one line on stderr and a
non-zero exit, before anything is loaded or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", "model file not found"),
        ("directory", "is a directory"),
        ("not-gguf", "is not a GGUF model file"),
    ],
)
def test_a_bad_model_file_is_one_line(tmp_path: Path, capsys, kind, words) -> None:
    model = tmp_path / "model.gguf"
    if kind == "directory":
        model.mkdir()
    elif kind == "not-gguf":
        model.write_bytes(b"<html>not a model</html>")
    code, out, err = run(capsys, "--data-dir", str(tmp_path), "model", "optimize", "--model", str(model))
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err and str(model) in err
    assert not (tmp_path / "models").exists()


def test_no_data_dir_is_one_line(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    missing = tmp_path / "nowhere"
    code, _, err = run(capsys, "--data-dir", str(missing), "model", "optimize", "--model", str(model))
    assert code == 2 and err.count("\n") == 1 and "no data dir" in err and "alveare init" in err
    assert not missing.exists()


def test_a_bad_type_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", str(tmp_path), "model", "optimize", "--type", "q2_k"])
    assert exc.value.code == 2 and "q2_k" in capsys.readouterr().err


def test_a_first_start_on_a_busy_cpu_serves_the_original_and_records_nothing(tmp_path: Path, caplog) -> None:
    """serve's one-off optimising step measures speed: on a CPU another process keeps busy it would
    measure wrong (and a fixed thread count against a busy neighbour can take many minutes), so it
    waits for a later start rather than writing a verdict."""
    from appliance.boot.first_start import optimize_embedded
    from appliance.core.settings import load_settings

    settings = load_settings({"data_dir": str(tmp_path), "threads": 2}, environ={})
    with caplog.at_level("INFO", logger="appliance.serve"):
        assert optimize_embedded(settings, str(tmp_path / "model.gguf"), idle=lambda: 0.3) is None
    assert not (tmp_path / "models").exists()
    [record] = caplog.records
    assert record.levelname == "WARNING" and "the CPU is busy (0.3 of 2 cores idle)" in record.getMessage()
    assert "The next start tries again" in record.getMessage()
