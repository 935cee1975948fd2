"""Enforcing WMS "SIP bloqués" bans: the kernel drops a banned address's SIP packets.

Data flows one way: the service's ban state -> `render` (an iptables-restore text of one
chain of our own) -> the kernel. The chain is rewritten whole on every change (atomically:
one `iptables-restore --noflush` replaces it and touches no other chain), so what is enforced
is always exactly the bans in force, also after a restart of the service or a lost update.

Why a firewall rule and not a PJSIP ACL (researched in Asterisk 22's source):

* a global PJSIP `type=acl` object is read when res_pjsip loads its configuration: every ban
  and unban would need a res_pjsip reload;
* a named ACL in acl.conf (`module reload acl`) is followed by res_pjsip only for endpoints:
  on the named-ACL change event it force-reloads *every endpoint* from pjsip.conf
  (`ast_sorcery_force_reload_object(sip_sorcery, "endpoint")`), and an endpoint ACL does
  not stop REGISTERs for unknown endpoints, the usual scan;
* both reloads need the AMI `config` or `system` write class (or `command`), which also
  allow `GetConfig` (every SIP password): the AMI service's least-privilege account
  could no longer be least-privilege.

A firewall rule costs Asterisk nothing (no reload; a flood from a banned address never
reaches res_pjsip's threads), is changed without AMI, and keeps the AMI account read-mostly.
It needs CAP_NET_ADMIN (the unit keeps it) and iptables (Debian's uses nf_tables).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wildix_ast.errors import ServiceError

log = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: iptables chain names: at most 28 characters.
_CHAIN = re.compile(r"^[A-Za-z0-9_.-]{1,28}$")
DEFAULT_CHAIN = "wildix-ast-bans"


@dataclass(frozen=True)
class Firewall:
    """One iptables chain (IPv4 and IPv6) hooked into INPUT, dropping banned addresses'
    packets to the SIP ports (UDP and TCP).

    With `plain_ports` (a site with TLS on: its UDP/TCP SIP port), the chain also keeps that
    port to `plain_from` (the LAN networks and the trunks' addresses) and to the flows the
    PBX opened itself (a provider's answers, and its requests on the registration's own
    flow, are ESTABLISHED): a phone outside the LAN reaches the PBX over TLS only. Asterisk
    cannot refuse a request by the transport it came on (an endpoint's `transport` governs
    only what it sends), so a REGISTER over UDP from outside would otherwise be taken."""

    ports: tuple[int, ...]
    chain: str = DEFAULT_CHAIN
    timeout: float = 10.0
    plain_ports: tuple[int, ...] = ()
    plain_from: tuple[IpNetwork, ...] = ()

    def __post_init__(self) -> None:
        if not _CHAIN.match(self.chain):
            raise ValueError(f"not an iptables chain name: {self.chain!r}")
        if not self.ports or any(not 0 < p < 65536 for p in (*self.ports, *self.plain_ports)):
            raise ValueError("the SIP ports to protect must be 1..65535")

    def render(self, banned: Iterable[IpNetwork], version: int) -> str:
        """The iptables-restore text that makes the chain drop exactly `banned` (of one IP
        version)."""
        ports = ",".join(str(p) for p in sorted(set(self.ports)))
        lines = ["*filter", f":{self.chain} - [0:0]"]
        for network in sorted((n for n in banned if n.version == version), key=str):
            for protocol in ("udp", "tcp"):
                lines.append(f"-A {self.chain} -s {network} -p {protocol} -m multiport "
                             f"--dports {ports} -j DROP")
        if self.plain_ports:
            plain = ",".join(str(p) for p in sorted(set(self.plain_ports)))
            for protocol in ("udp", "tcp"):
                to = f"-p {protocol} -m multiport --dports {plain}"
                lines.append(f"-A {self.chain} {to} -m conntrack --ctstate ESTABLISHED,RELATED "
                             "-j RETURN")
                lines += [f"-A {self.chain} -s {network} {to} -j RETURN"
                          for network in sorted((n for n in self.plain_from
                                                 if n.version == version), key=str)]
                lines.append(f"-A {self.chain} {to} -j DROP")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def apply(self, banned: Sequence[IpNetwork]) -> None:
        """Make the kernel drop exactly `banned` (both IP versions); ServiceError if
        iptables is missing or refuses."""
        for version, program in ((4, "iptables"), (6, "ip6tables")):
            if version == 6 and not any(n.version == 6 for n in banned) \
                    and shutil.which(program) is None:
                continue  # no IPv6 tooling and nothing to ban there
            self._restore(program, self.render(banned, version))
            jump = ["-j", self.chain]
            if self._call([program, "-w", "5", "-C", "INPUT", *jump]).returncode != 0:
                self._run([program, "-w", "5", "-I", "INPUT", "1", *jump])

    def refresh(self, banned: Sequence[IpNetwork]) -> bool:
        """`apply`, but only where the chain is in place now (never creating nor hooking
        one): what `security unban` does while the service is not running. False when no
        chain was there (nothing enforced, nothing to lift)."""
        found = False
        for version, program in ((4, "iptables"), (6, "ip6tables")):
            if shutil.which(program) is None or not self.installed(program)[0]:
                continue
            self._restore(program, self.render(banned, version))
            found = True
        return found

    def remove(self) -> bool:
        """Unhook and delete the chain: exactly what `apply` added (the jump from INPUT,
        the chain and its rules), nothing else. Idempotent; True when something was
        there. ServiceError when iptables refuses (no CAP_NET_ADMIN)."""
        removed = False
        for program in ("iptables", "ip6tables"):
            if shutil.which(program) is None:
                continue
            exists, jumps = self.installed(program)
            for _ in range(jumps):
                self._run([program, "-w", "5", "-D", "INPUT", "-j", self.chain])
            if exists:
                self._run([program, "-w", "5", "-F", self.chain])
                self._run([program, "-w", "5", "-X", self.chain])
            removed = removed or exists or jumps > 0
        return removed

    def installed(self, program: str = "iptables") -> tuple[bool, int]:
        """(whether the chain exists, how many jumps from INPUT lead to it), read from the
        whole filter table: `iptables -S CHAIN` cannot tell a missing chain from a refusal
        (iptables-nft answers a missing one with "incompatible")."""
        listing = self._run([program, "-w", "5", "-S"], what="cannot read the firewall")
        exists, jumps = False, 0
        for line in listing.splitlines():
            words = line.split()
            if words == ["-N", self.chain]:
                exists = True
            elif words == ["-A", "INPUT", "-j", self.chain]:
                jumps += 1
        return exists, jumps

    def _restore(self, program: str, text: str) -> None:
        # --noflush: only the chain named in `text` is replaced, no other rule is touched
        self._run([f"{program}-restore", "-w", "5", "--noflush"], text)

    def _call(self, command: list[str], text: str = "") -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(command, input=text, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise ServiceError(f"cannot enforce SIP bans: {command[0]} is not installed "
                               "(Debian package iptables)") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"cannot enforce SIP bans: {' '.join(command)} did not end "
                               f"within {self.timeout:g} s") from None

    def _run(self, command: list[str], text: str = "", *,
             what: str = "cannot enforce SIP bans") -> str:
        done = self._call(command, text)
        if done.returncode != 0:
            raise ServiceError(f"{what}: {' '.join(command)} failed: "
                               f"{(done.stderr or done.stdout).strip()[:300]}")
        return done.stdout


def lab_chain(sip_port: int) -> str:
    """The chain of the AMI service serving a lab (`runtime serve --lab`): one per lab SIP
    port, so parallel labs and the host's own `wildix-ast-bans` never touch each other's;
    `lab down` removes it."""
    return f"wildix-ast-lab-{sip_port}"


def enforced(chain: str = DEFAULT_CHAIN) -> list[str]:
    """The source addresses the chain drops now (for `status` and tests)."""
    found: list[str] = []
    for program in ("iptables", "ip6tables"):
        if shutil.which(program) is None:
            continue
        done = subprocess.run([program, "-w", "5", "-S", chain], capture_output=True,
                              text=True, check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            if words[:2] == ["-A", chain] and "-s" in words:
                address = words[words.index("-s") + 1]
                network = ipaddress.ip_network(address, strict=False)
                text = str(network.network_address) if network.num_addresses == 1 \
                    else str(network)
                if text not in found:
                    found.append(text)
    return found
