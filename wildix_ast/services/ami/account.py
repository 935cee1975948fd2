"""What the AMI service and the commands that ask the live PBX take from the stored site:
the AMI service's own account (least privilege, see `asterisk.manager`), the addresses never
banned (the site's LAN networks and trunks) and the SIP ports a ban closes."""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.asterisk.manager import runtime_account
from wildix_ast.errors import ServiceError
from wildix_ast.model.site import Site
from wildix_ast.services.ami.supervisor import AmiSettings


@dataclass(frozen=True)
class SiteRuntime:
    """The runtime view of a site (pure: computed from the model, no I/O)."""

    ami_port: int
    ami_user: str
    never_ban: tuple[str, ...]
    sip_ports: tuple[int, ...]
    #: with TLS on: the UDP/TCP SIP port, kept to `never_ban` (LAN, trunks) by the firewall
    plain_port: int | None = None


def site_runtime(site: Site) -> SiteRuntime:
    sip = site.system.sip_rtp
    trunk_addresses = [a for trunk in site.trunks for a in trunk.identify_addresses]
    never_ban = [str(n) for n in sip.lan_networks] + [f"{a}/32" for a in trunk_addresses]
    ports = (sip.sip_port, sip.tls_port) if sip.tls else (sip.sip_port,)
    manager = site.system.manager
    return SiteRuntime(ami_port=manager.port, ami_user=runtime_account(manager.username),
                       never_ban=tuple(dict.fromkeys(never_ban)), sip_ports=ports,
                       plain_port=sip.sip_port if sip.tls else None)


def given_secret(secret_file: Path | None) -> str:
    """The AMI secret given to a command: a file, else $WILDIX_AST_AMI_SECRET, else ''."""
    if secret_file is None:
        return os.environ.get("WILDIX_AST_AMI_SECRET", "")
    try:
        return secret_file.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ServiceError(f"cannot read the AMI secret from {secret_file}: "
                           f"{e.strerror}") from None


@functools.cache
def stored_runtime(db: str | None) -> tuple[SiteRuntime, str] | None:
    """The stored site's runtime view and its account's secret (generated once, kept in the
    store's vault, the same the applied manager.conf holds); None without a stored site."""
    from wildix_ast.store import open_store
    from wildix_ast.store.vault import manager_secret

    with open_store(db) as store:
        if not store.has_site():
            return None
        runtime = site_runtime(store.export_site())
        return runtime, manager_secret(store, runtime.ami_user)


def ami_settings(host: str, port: int | None, user: str | None, secret: str,
                 db: str | None, **options: float) -> AmiSettings:
    """The account as given; what is missing comes from the stored site (the AMI service's
    account and its generated secret)."""
    if secret and port is not None and user is not None:
        return AmiSettings(host, port, user, secret, **options)
    stored = stored_runtime(db)
    if stored is None:
        raise ServiceError("no AMI account given (--ami-port, --ami-user, --secret-file) "
                           "and the store holds no site to take it from")
    runtime, stored_secret = stored
    if user is not None and user != runtime.ami_user and not secret:
        raise ServiceError(f"--ami-user {user}: give its secret (--secret-file or "
                           "$WILDIX_AST_AMI_SECRET); the store keeps only the AMI service's "
                           f"account's ({runtime.ami_user})")
    return AmiSettings(host, port or runtime.ami_port, user or runtime.ami_user,
                       secret or stored_secret, **options)


def never_ban_networks(given: list[str] | None, db: str | None) -> list[str]:
    """`--never-ban` as given, else the stored site's LAN networks and trunk addresses."""
    if given:
        for network in given:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as e:
                raise ServiceError(f"--never-ban {network}: {e}") from None
        return given
    stored = stored_runtime(db)
    return list(stored[0].never_ban) if stored else []


def sip_ports(given: list[int] | None, db: str | None) -> tuple[int, ...]:
    """`--sip-port` as given, else the stored site's SIP (and TLS) ports, else 5060."""
    if given:
        return tuple(given)
    stored = stored_runtime(db)
    return stored[0].sip_ports if stored else (5060,)


def plain_sip_port(given: list[int] | None, db: str | None) -> tuple[int, ...]:
    """The UDP/TCP SIP port the firewall keeps to the LAN and the trunks: the stored site's
    (or the first `--sip-port` given, a lab's) when the site has TLS on; () otherwise."""
    stored = stored_runtime(db)
    if stored is None or stored[0].plain_port is None:
        return ()
    return (given[0],) if given else (stored[0].plain_port,)
