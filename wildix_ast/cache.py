"""Where wildix-ast keeps what it can rebuild: the lab's root filesystems, compiled
templates, pip's downloads for the deploy lab."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The wildix-ast cache: `$WILDIX_AST_CACHE`, else `~/.cache/wildix-ast`."""
    configured = os.environ.get("WILDIX_AST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "wildix-ast"
