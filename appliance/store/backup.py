"""Online backups of the database.

SQLite's backup API copies the pages of one read transaction, so the copy is consistent
while the server keeps writing (in WAL mode a reader never blocks the writer, and the writer
never restarts the copy). The copy goes to a private temporary file beside the destination,
is made a self-contained single file (no -wal), passes PRAGMA integrity_check, and only then
takes its name, never overwriting a file. The admin API streams such a copy to an
`AdminClient`, which finishes it the same way on its own machine.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from appliance.core.errors import Conflict, InvalidRequest, NotFound, ServerError
from appliance.store.records import BackupInfo


def destination(path: str | Path) -> Path:
    """Where a backup goes: `path`, or a time-stamped file in it when it is a folder. Never an existing file.

    A path ending in a separator names a folder even when it does not exist yet: it is made (owner-only,
    with any missing parents), because `Path` drops the trailing slash and `DIR/` would otherwise become
    a file named DIR. A file path whose folder is missing is refused: a typo there should not make folders.
    """
    text = str(path)
    if not text.strip():
        raise InvalidRequest("Give the file (or folder) to write the backup to.", param="path")
    dest = Path(path).expanduser()
    if text.endswith(("/", os.sep)) and not dest.is_dir():
        make_folder(dest)
    if dest.is_dir():
        dest = dest / f"alveare-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db"
    if dest.exists() or dest.is_symlink():
        raise Conflict(f"{dest} already exists; a backup never overwrites a file. Choose a new name.", param="path")
    if not dest.parent.is_dir():
        raise NotFound(
            f"The folder {dest.parent} does not exist. Create it first, or give a folder ending in / "
            f"(such as {dest.parent}/), which the backup makes, for a time-stamped file.",
            param="path",
        )
    return dest


def make_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each owner-only (0700): the backup holds key hashes."""
    missing: list[Path] = []
    for p in (folder, *folder.parents):
        if p.is_dir():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
            # mkdir's mode passes through the umask; a backup folder is private whatever the umask.
            p.chmod(0o700)
        except FileExistsError:
            if not p.is_dir():  # made by someone else meanwhile is fine; a file in the way is not
                raise InvalidRequest(f"Could not make the folder {folder}: {p} is a file.", param="path") from None
        except OSError as exc:
            raise InvalidRequest(f"Could not make the folder {folder}: {exc.strerror or exc}.", param="path") from None


def scratch_file(dest: Path) -> Path:
    """A new, empty, owner-only file beside `dest` for the copy in progress (it holds key hashes and prompts)."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise unwritable(dest, exc) from None
    return tmp


def unwritable(dest: Path, exc: OSError) -> InvalidRequest:
    return InvalidRequest(f"Could not write the backup to {dest}: {exc.strerror or exc}.", param="path")


def copy_database(source: Path, dest: Path) -> None:
    """Copy the live database at `source` into the existing empty file `dest`, as one snapshot."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one consistent snapshot
            # The copy inherits WAL mode from the source's header; a backup is one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def finish(tmp: Path, dest: Path) -> BackupInfo:
    """Check the copy in `tmp` and give it the name `dest` (never overwriting); the counts say what it holds."""
    try:
        conn = sqlite3.connect(f"file:{tmp}?mode=ro", uri=True)
        try:
            integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
            tables = ("accounts", "api_keys", "usage")
            counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ServerError(f"The backup copy is not an Alveare database ({exc}); {dest} was not written.") from None
    if integrity != "ok":
        raise ServerError(f"The backup copy failed its integrity check ({integrity[:200]}); nothing was written.")
    try:
        os.link(tmp, dest)  # fails if dest appeared meanwhile: never overwrite
    except FileExistsError:
        raise Conflict(f"{dest} already exists; a backup never overwrites a file.", param="path") from None
    except OSError:
        if dest.exists():
            raise Conflict(f"{dest} already exists; a backup never overwrites a file.", param="path") from None
        os.replace(tmp, dest)  # a file system without hard links
    return BackupInfo(
        path=str(dest),
        bytes=dest.stat().st_size,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        integrity=integrity,
        accounts=counts[0],
        keys=counts[1],
        usage_records=counts[2],
    )


def backup(source: Path, path: str | Path) -> BackupInfo:
    """A consistent, checked copy of the database at `source`, written to `path` (see `destination`)."""
    dest = destination(path)
    tmp = scratch_file(dest)
    try:
        copy_database(source, tmp)
        return finish(tmp, dest)
    except OSError as exc:
        raise unwritable(dest, exc) from None
    except sqlite3.Error as exc:
        raise ServerError(f"Could not copy the database: {exc}.") from None
    finally:
        tmp.unlink(missing_ok=True)
