"""mkdocs hook: the decisions index lists every record in docs/decisions/ when the site is built, so
adding a record (002-..., 003-...) needs no edit to mkdocs.yml or to the index."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- decisions -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "decisions/index.md" or MARKER not in markdown:
        return markdown
    folder = Path(config["docs_dir"]) / "decisions"
    rows = []
    for record in sorted(folder.glob("[0-9]*.md")):
        first = record.read_text(encoding="utf-8").splitlines()[:1]
        title = re.sub(r"^#\s*", "", first[0]).strip() if first else record.stem
        rows.append(f"- [{title}]({record.name})")
    return markdown.replace(MARKER, "\n".join(rows) or "No records yet.")
