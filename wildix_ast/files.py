"""Writing files so that a reader (Asterisk, a person) sees the old text or the new, never
half of one: a temporary file in the same folder, fsync, rename, fsync of the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
    tmp = _written_aside(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_atomic_all(folder: Path, texts: dict[str, str], mode: int = FILE_MODE) -> None:
    """`write_atomic` of every file name -> text in `folder`. The temporary files are synced
    together (the disk flushes them in a few commits instead of one per file) and the folder
    once: a whole configuration is written in a third of the time."""
    pending: list[tuple[str, Path]] = []
    try:
        for name, text in texts.items():
            path = folder / name
            pending.append((_written_aside(path, text.encode("utf-8", "surrogateescape"),
                                           mode, sync=False), path))
        with ThreadPoolExecutor(max_workers=min(32, len(pending) or 1)) as pool:
            list(pool.map(_fsync_path, [tmp for tmp, _path in pending]))
        while pending:
            os.replace(*pending[0])
            pending.pop(0)
    except BaseException:
        for tmp, _path in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    fsync_dir(folder)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _written_aside(path: Path, data: bytes, mode: int, *, sync: bool = True) -> str:
    """A temporary file beside `path` holding `data` (synced unless `sync` is False), with
    `mode` and the owner and group of the file it will replace (else of the folder)."""
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
            if sync:
                os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp
