"""acl.conf: named ACLs (none yet: each AMI account carries its own permit/deny)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="acl.conf",
    applied_by=Reload("acl", "module reload acl", order=10),
)
