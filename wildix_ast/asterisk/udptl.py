"""udptl.conf: UDPTL (T.38 fax transport) ports; defaults until the fax work."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="udptl.conf",
    applied_by=Reload("udptl", "module reload udptl", order=10),
)
