"""Comments state the rule and why; the measurement behind a constant lives in docs/decisions/
(shared/ARCHITECTURE.md, "Comments and records"). So no comment, docstring or setting's help under
appliance/ quotes one machine's milliseconds or names the CPU it was timed on, and every record the
code links to exists."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from appliance.core.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = ROOT / "appliance"

# A timing (5 ms, 2.5ms, 60 us), a CPU model named as where something was measured, or "measured here".
TIMING = re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:ms|us|µs)\b|\b(?:Xeon|EPYC|Epyc|Ryzen|Threadripper)s?\b|measured here")

# True non-timing uses, by file and a snippet of the line: the only ones allowed.
ALLOWED = {
    # The format OpenAI writes x-ratelimit-reset-* in, not a timing.
    "appliance/core/limits.py": ('"20ms"',),
    # Which CPUs have AMX kernels (a fact of the hardware, the reason for the kernel check), not a timing.
    "appliance/engine/native/kernels.py": ("AMX on Intel Xeons",),
    "appliance/engine/native/llama.py": ("AMX on Xeons", "on a Xeon with AMX"),
    "appliance/core/settings.py": ("AMX on Xeons",),
}

# Records linked from the code that may be missing for now (a record being written): none.
PENDING_RECORDS: set[str] = set()

LINK = re.compile(r"docs/decisions/([0-9]{3}-[A-Za-z0-9_.-]+?\.md)")


def prose(source: str) -> list[tuple[int, str]]:
    """(line number, text) of every comment and docstring line in `source`."""
    lines: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            lines.append((tok.start[0], tok.string))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                doc = body[0].value.value
                if isinstance(doc, str):
                    lines.extend((body[0].lineno + i, line) for i, line in enumerate(doc.splitlines()))
    return lines


def timings(path: str, source: str) -> list[str]:
    """`path:line: text` for every comment or docstring line of `source` that cites a timing."""
    allowed = ALLOWED.get(path, ())
    return [
        f"{path}:{n}: {text.strip()}"
        for n, text in prose(source)
        if TIMING.search(text) and not any(snippet in text for snippet in allowed)
    ]


def sources() -> list[tuple[str, str]]:
    return [
        (path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(APPLIANCE.rglob("*.py"))
    ]


def test_the_check_catches_a_timing_and_a_cpu_name() -> None:
    source = '"""Restoring takes 1 ms for 250 tokens."""\nX = 1  # on a 2-core Xeon: 2.5ms a step\n'
    assert len(timings("appliance/x.py", source)) == 2
    assert timings("appliance/x.py", "X = 1  # 64 steps, 5 s of steps, 25% of the time\n") == []


def test_no_comment_under_appliance_cites_one_machines_timing() -> None:
    found = [hit for path, source in sources() for hit in timings(path, source)]
    assert not found, (
        "a comment states the rule and why; the measurement goes in docs/decisions/NNN-*.md, linked "
        "from the comment:\n" + "\n".join(found)
    )


def test_no_settings_help_cites_one_machines_timing() -> None:
    # The help texts make docs/configuration.md and the CLI reference: the same rule applies.
    allowed = ALLOWED["appliance/core/settings.py"]
    found = [
        f"{s.name}: {text}"
        for s in SETTINGS
        for text in (s.help, s.more)
        if TIMING.search(text) and not any(snippet in text for snippet in allowed)
    ]
    assert not found, "\n".join(found)


def test_every_decision_record_the_code_links_to_exists() -> None:
    linked = {(name, path) for path, source in sources() for name in LINK.findall(source)}
    assert linked, "no code links a record: the pattern is wrong"
    missing = sorted(
        f"{path}: docs/decisions/{name}"
        for name, path in linked
        if name not in PENDING_RECORDS and not (ROOT / "docs" / "decisions" / name).is_file()
    )
    assert not missing, "\n".join(missing)
