"""stasis.conf: Asterisk's message bus; defaults, written so no packaged file is read."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Restart

FILE = ConfigFile(
    name="stasis.conf",
    applied_by=Restart("stasis.conf is read only at startup"),
)
