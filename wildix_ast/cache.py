"""Where wildix-ast keeps what it can rebuild: the lab's root filesystems, compiled
templates, the realtime row cache, pip's downloads for the deploy lab.

A check or dry run writes nothing anywhere, not even a cache: it calls `read_only()` first,
after which the caches are read when they exist and never written or created."""

from __future__ import annotations

import os
from pathlib import Path

_read_only = False


def read_only() -> None:
    """From now on (this process: a check or a dry run), caches are read, never written."""
    global _read_only
    _read_only = True


def writable() -> bool:
    """Whether this process may write its caches (False after `read_only()`)."""
    return not _read_only


def cache_dir() -> Path:
    """The wildix-ast cache: `$WILDIX_AST_CACHE`, else `~/.cache/wildix-ast`."""
    configured = os.environ.get("WILDIX_AST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "wildix-ast"
