"""The documentation site builds with `mkdocs build --strict`: a link to a missing page or anchor, a
missing included file or a bad setting in mkdocs.yml fails here, before it ships."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]' (or the test extra)")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    # the decisions index lists the records found in docs/decisions/ at build time
    index = (tmp_path / "site" / "decisions" / "index.html").read_text(encoding="utf-8")
    for record in sorted((ROOT / "docs" / "decisions").glob("[0-9]*.md")):
        assert f'href="{record.stem}/"' in index, record.name
