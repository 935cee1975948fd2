"""cel.conf: channel event logging, off until the CDR work gives it a backend."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="cel.conf",
    applied_by=Reload("cel", "module reload cel", order=10),
)
