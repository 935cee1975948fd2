"""ccss.conf: call completion (CCBS/CCNR) settings; Asterisk's defaults, written so that
Asterisk does not fall back to a stale packaged file."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="ccss.conf",
    applied_by=Reload("ccss", "module reload ccss", order=10),
)
