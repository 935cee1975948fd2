"""Reading an append-only file Asterisk writes, from a checkpoint, complete lines only.

A checkpoint is the file's identity (device, inode) and the offset after the last complete
line taken. `read_new` returns the lines written since, and the checkpoint to store with
them (in the same transaction, `spool.Spool.take`). The cases:

- the file is missing: nothing yet (Asterisk creates it with its first record);
- same identity, larger: the new complete lines; a line Asterisk is still writing (or was
  writing when it was killed) stays for the next read, until a newline ends it;
- another identity (the file was rotated: renamed, a new one created): the rest of the old
  file, found in the same folder by its inode (`name.1`, `name-20261207`, ...), then the
  new file from its start. If the old file is gone already, its unread rest is lost and
  said so (`Rotation.lost_old`): rotate with the collector running, or keep one old file;
- same identity, smaller (truncated in place, `copytruncate`): read again from the start,
  said so (`Rotation.truncated`): lines written between the copy and the truncation are
  lost, which is why rotation must rename, never copy-truncate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The most read in one pass: memory stays bounded when the collector catches up.
CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Checkpoint:
    device: int
    inode: int
    offset: int


@dataclass(frozen=True)
class Batch:
    """Lines read (offsets where each starts, in its file) and the checkpoint after them."""

    lines: list[tuple[int, bytes]]
    checkpoint: Checkpoint | None
    notes: list[str]
    more: bool
    """True when a chunk's worth was read and more may be waiting."""


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size


def _complete_lines(path: Path, offset: int,
                    limit: int = CHUNK) -> tuple[list[tuple[int, bytes]], int, bool]:
    """The complete lines from `offset` (at most about `limit` bytes), the offset after them,
    and whether the read stopped at the limit."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read(limit)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset, False
    lines: list[tuple[int, bytes]] = []
    position = offset
    for line in data[:end + 1].split(b"\n")[:-1]:
        if line.strip():
            lines.append((position, line))
        position += len(line) + 1
    return lines, offset + end + 1, len(data) >= limit


def _find_by_inode(folder: Path, name: str, device: int, inode: int) -> Path | None:
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(name) and p.is_file()]
    except OSError:
        return None
    for candidate in candidates:
        st = candidate.stat()
        if (st.st_dev, st.st_ino) == (device, inode):
            return candidate
    return None


def read_new(path: Path, checkpoint: Checkpoint | None) -> Batch:
    """What was appended to `path` since `checkpoint` (see the module documentation)."""
    found = _identity(path)
    if found is None:
        return Batch([], checkpoint, [], False)
    device, inode, size = found
    notes: list[str] = []
    if checkpoint is not None and (checkpoint.device, checkpoint.inode) != (device, inode):
        old = _find_by_inode(path.parent, path.name, checkpoint.device, checkpoint.inode)
        if old is not None:
            lines, offset, more = _complete_lines(old, checkpoint.offset)
            if lines or more:
                return Batch(lines, Checkpoint(checkpoint.device, checkpoint.inode, offset),
                             [], True)
            rest = old.stat().st_size - offset
            if rest:
                notes.append(f"{old}: {rest} bytes without a final newline left behind at "
                             "rotation")
        else:
            notes.append(f"{path} was rotated and the old file is gone: what it held after "
                         f"offset {checkpoint.offset} was never read")
        checkpoint = None
    if checkpoint is not None and size < checkpoint.offset:
        notes.append(f"{path} shrank below the checkpoint ({size} < {checkpoint.offset}): "
                     "truncated in place, read again from its start")
        checkpoint = None
    offset = checkpoint.offset if checkpoint is not None else 0
    lines, offset, more = _complete_lines(path, offset)
    return Batch(lines, Checkpoint(device, inode, offset), notes, more)
