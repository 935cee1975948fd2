"""Writing files so that a reader (Asterisk, a person) sees the old text or the new, never
half of one: a temporary file in the same folder, fsync, rename, fsync of the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

#: Generated configuration holds secrets: readable by its owner and group (asterisk) only.
FILE_MODE = 0o640


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Write through a temporary file in the same folder, fsync, rename over `path`.
    The owner and group of the file it replaces (else of the folder) are kept."""
    write_atomic_bytes(path, text.encode("utf-8", "surrogateescape"), mode)


def write_atomic_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """`write_atomic` for binary content (sound files)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        st = path.parent.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            with contextlib.suppress(PermissionError):
                os.fchown(out.fileno(), st.st_uid, st.st_gid)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
