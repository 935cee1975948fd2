"""`wildix-ast security unban`: lift a ban from the ban state and, at once, from the kernel.

The running AMI service would lift the rule within a second by itself; but while it is not
running (crashed, killed by its watchdog, hung) the chain it left keeps dropping the address
until it runs again. So the command rewrites the chain itself, from the same state and with
the same `Firewall` the service uses (chain and ports as the service's last status recorded
them), under the same firewall lock. It never creates a chain: a service stopped cleanly
removed its own, and then nothing is enforced.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from wildix_ast.errors import ServiceError
from wildix_ast.services.ami.ban_file import firewall_lock, lift_ban, load_bans
from wildix_ast.services.ami.firewall import Firewall, enforced
from wildix_ast.services.ami.security import SecurityState, banned_networks
from wildix_ast.services.ami.service import last_status


class Kernel(Enum):
    LIFTED = "lifted"            # the chain dropped it; rewritten without it
    NOT_DROPPED = "not dropped"  # the chain is in place and did not drop it
    NO_CHAIN = "no chain"        # nothing in place (service stopped cleanly, never ran)
    NOT_ENFORCED = "not enforced"  # the service counts and lists only (--no-firewall)
    UNKNOWN = "unknown"          # no service status: which chain is not known
    FAILED = "failed"            # iptables refused (no CAP_NET_ADMIN): the rule stays


@dataclass(frozen=True)
class Unbanned:
    address: str
    listed: bool    # it was in the ban state
    kernel: Kernel
    chain: str = ""
    error: str = ""

    @property
    def banned_before(self) -> bool:
        return self.listed or self.kernel is Kernel.LIFTED


def unban_now(state_dir: Path, address: str) -> Unbanned:
    """Lift `address`'s ban from `bans.json`, then make the firewall chain (if any) drop
    exactly the bans left. ValueError if `address` is not an IP address."""
    key = str(ipaddress.ip_address(address))
    listed = lift_ban(state_dir, key)
    try:
        enforcement = last_status(state_dir).get("enforcement", {})
    except ServiceError:
        return Unbanned(key, listed, Kernel.UNKNOWN)
    if enforcement.get("kind") != "iptables":
        return Unbanned(key, listed, Kernel.NOT_ENFORCED)
    chain = str(enforcement.get("chain", ""))
    try:
        firewall = Firewall(tuple(int(p) for p in enforcement.get("ports", ())), chain,
                            plain_ports=tuple(int(p) for p in enforcement.get("plain_ports", ())),
                            plain_from=tuple(ipaddress.ip_network(n) for n in
                                             enforcement.get("plain_from", ())))
    except (ValueError, TypeError):
        # a status written before the ports were recorded: the running service follows
        return Unbanned(key, listed, Kernel.UNKNOWN, chain)
    try:
        with firewall_lock(state_dir):
            dropped = key in enforced(chain)
            remaining = banned_networks(SecurityState(bans=load_bans(state_dir)), time.time())
            if not firewall.refresh(remaining):
                return Unbanned(key, listed, Kernel.NO_CHAIN, chain)
    except ServiceError as e:
        return Unbanned(key, listed, Kernel.FAILED, chain, e.message)
    return Unbanned(key, listed, Kernel.LIFTED if dropped else Kernel.NOT_DROPPED, chain)
