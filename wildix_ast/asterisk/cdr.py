"""cdr.conf: call detail records; the CDR work adds backends."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="cdr.conf",
    applied_by=Reload("cdr", "module reload cdr", order=10),
)
