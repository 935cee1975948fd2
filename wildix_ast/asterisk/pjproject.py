"""pjproject.conf: the PJSIP stack's own logging; defaults."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="pjproject.conf",
    applied_by=Reload("res_pjproject.so", "module reload res_pjproject.so", order=10),
)
