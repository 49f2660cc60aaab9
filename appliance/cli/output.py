"""What every command prints: tables, --json, usage bars, progress and the one-line errors."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import msgspec


def print_json(value: Any) -> None:
    """Any Struct, list or dict as indented JSON on stdout."""
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> None:
    """Columns as wide as their widest cell; headers named in `right` (numbers) are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if h in right else v.ljust(w) for v, w, h in zip(values, widths, headers, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    for row in cells:
        print(line(row))


def bar(used: float, limit: float, width: int = 30) -> str:
    """A text gauge like [#########.....] 31%; past the limit it is full and says so."""
    if limit <= 0:
        return "[" + "." * width + "]  no limit"
    share = used / limit
    filled = min(width, round(share * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {share * 100:.0f}%"


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def fail(message: str, code: int = 1) -> int:
    """One line on stderr; the exit code to return."""
    print(f"alveare: error: {message}", file=sys.stderr)
    return code


def error_line(exc: BaseException) -> str:
    """An error as one line with the request id when the server gave one (SDK errors carry it in str())."""
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    rid = getattr(exc, "request_id", None) or (getattr(exc, "headers", None) or {}).get("x-request-id")
    if rid and rid not in message:
        message += f" (request id {rid})"
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    if isinstance(status, int) and status >= 400 and code and not message.startswith(str(status)):
        message = f"{status} {code}: {message}"
    return message


@contextmanager
def progress(what: str, stream: TextIO | None = None) -> Iterator[None]:
    """A spinner with `what` on stderr while the block runs, when stderr is a terminal (else silent,
    so scripts and pipes see only the result)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield
        return
    done = threading.Event()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            stream.write(f"\r{frame} {what}")
            stream.flush()
            if done.wait(0.1):
                break
        stream.write("\r" + " " * (len(what) + 2) + "\r")
        stream.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
