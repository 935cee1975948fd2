"""udptl.conf: UDPTL (T.38 fax transport): the port range, checksums and how many datagrams
redundancy or FEC covers (the endpoints choose which: `t38_udptl_ec`, docs/fax.md)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload

FILE = ConfigFile(
    name="udptl.conf",
    applied_by=Reload("udptl", "module reload udptl", order=10),
)
