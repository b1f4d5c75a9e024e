"""Checks that turn a bad run-store path into one clear `StoreError` line before SQLite sees it,
and the store's typed errors.

SQLite's own messages ("file is not a database", "unable to open database file") name neither
the file nor the fix, and a damaged file may only fail halfway through a run. So the store
checks the path first (folder or file, readable, writable, its folder writable: the WAL needs
to create `-wal` and `-shm` files next to the store), reads the 100-byte header (magic string,
page size and page count: a file shorter than its header says is truncated) and, for files up
to QUICK_CHECK_MAX_BYTES, runs `PRAGMA quick_check` once it is open.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "notes.txt").write_text("hello")
    5
    >>> try:
    ...     check_path(folder / "notes.txt")
    ... except StoreError as e:
    ...     print(str(e).split(":")[0])
    the run store ... is not an SQLite database
"""

from __future__ import annotations

import os
from pathlib import Path

from proofloop.errors import UserInputError

SQLITE_MAGIC = b"SQLite format 3\x00"
QUICK_CHECK_MAX_BYTES = 64 * 2**20  # quick_check reads every page: skip it on bigger files


class StoreError(UserInputError):
    """The store file cannot be used as it is (not a database, damaged, read-only, locked, written
    by a newer proofloop). A UserInputError: the CLI prints its one line and exits with code 2."""


class RunBusy(StoreError):
    """Another live owner holds the run's lease."""


def _writable(path: Path) -> bool:
    # Root passes os.access for any file, so a file or folder without write bits counts as
    # read-only too: that is what its owner asked for.
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def _existing_ancestor(path: Path) -> Path:
    for p in path.parents:
        if p.exists():
            return p
    return Path("/")


def check_path(path: Path) -> None:
    """Raise StoreError unless `path` can hold a run store (creating its folder when missing)."""
    if path.is_dir():
        raise StoreError(f"the run store {path} is a folder: give a file path, e.g. {path / 'proofloop.db'}")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise StoreError(f"cannot create the run store {path}: {ancestor} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the folder of the run store {path}: {e.strerror}") from None
    if path.exists():
        check_file(path)
    if not _writable(path.parent):
        raise StoreError(f"the folder {path.parent} of the run store is read-only: SQLite's write-ahead log "
                         f"needs to create files next to {path.name}; make the folder writable or move the store")


def check_file(path: Path) -> None:
    """The header of an existing file: readable, an SQLite database, not truncated, writable."""
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the run store {path}: permission denied")
    size = path.stat().st_size
    if size == 0:  # SQLite makes an empty file a new database
        return check_writable(path)
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"the run store {path} is not an SQLite database: point PROOFLOOP_DB or --db at a "
                         f"proofloop store, or move the file away")
    if len(header) < 100:
        raise StoreError(f"the run store {path} is damaged: only {size} bytes, shorter than its header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when the change counter matches "version-valid-for" (SQLite >= 3.7).
    if header[24:28] == header[92:96] and size < page_size * pages:
        raise StoreError(f"the run store {path} is damaged: truncated to {size} bytes of "
                         f"{page_size * pages}; restore a copy or start a new store")
    check_writable(path)


def check_writable(path: Path) -> None:
    if not _writable(path):
        raise StoreError(f"the run store {path} is read-only: proofloop writes to it (and SQLite's WAL "
                         f"needs write access even to read); make it writable")
