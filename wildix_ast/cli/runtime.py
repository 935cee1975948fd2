"""`wildix-ast runtime ...`: the AMI service and what a person asks it."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import out
from wildix_ast.errors import ServiceError
from wildix_ast.lab.instance import running_lab
from wildix_ast.services.ami.account import (
    ami_settings,
    given_secret,
    never_ban_networks,
    plain_sip_port,
    sip_ports,
)
from wildix_ast.services.ami.call_log import format_call, read_log_files
from wildix_ast.services.ami.firewall import DEFAULT_CHAIN, Firewall, lab_chain
from wildix_ast.services.ami.security import BanPolicy
from wildix_ast.services.ami.service import CALLS_FILE, MonitorService, ServiceConfig, read_status
from wildix_ast.services.sdnotify import keep_alive, notify

app = typer.Typer(help="The AMI service: live PBX state, per-call debug log, SIP bans.",
                  no_args_is_help=True)

StateDir = Annotated[Path, typer.Option(
    "--state-dir", envvar="WILDIX_AST_RUNTIME_STATE", show_envvar=True,
    help="The service's files (status, call log, bans).")]
DEFAULT_STATE = Path("/var/lib/wildix-ast/runtime")


@app.command()
def serve(
    state_dir: StateDir = DEFAULT_STATE,
    ami_host: Annotated[str, typer.Option(envvar="WILDIX_AST_AMI_HOST")] = "127.0.0.1",
    ami_port: Annotated[int | None, typer.Option(
        envvar="WILDIX_AST_AMI_PORT", help="Default: the stored site's manager port.")] = None,
    ami_user: Annotated[str | None, typer.Option(
        envvar="WILDIX_AST_AMI_USER", help="Default: the AMI service's own account in the "
        "stored site's manager.conf (<manager>-runtime).")] = None,
    secret_file: Annotated[Path | None, typer.Option(
        envvar="WILDIX_AST_AMI_SECRET_FILE", help="File holding the AMI secret (else "
        "$WILDIX_AST_AMI_SECRET, else the store's).")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="WILDIX_AST_DB", help="The store (for the AMI account).")] = None,
    never_ban: Annotated[list[str] | None, typer.Option(
        "--never-ban", help="A LAN or trunk network (CIDR) never banned; repeat. Default: "
        "the stored site's LAN networks and IP trunk addresses (loopback always).")] = None,
    firewall: Annotated[bool, typer.Option(
        "--firewall/--no-firewall", help="Enforce bans: iptables drops a banned address's "
        "SIP packets (needs CAP_NET_ADMIN).")] = True,
    sip_port: Annotated[list[int] | None, typer.Option(
        "--sip-port", min=1, max=65535, help="A SIP port a ban closes (UDP and TCP); repeat. "
        "Default: the stored site's SIP and TLS ports.")] = None,
    chain: Annotated[str, typer.Option(help="The iptables chain of the bans.")]
    = DEFAULT_CHAIN,
    threshold: Annotated[int, typer.Option(min=1, help="Attempts that ban.")] = 20,
    window: Annotated[float, typer.Option(min=1, help="…within this many seconds.")] = 60.0,
    ban_time: Annotated[float, typer.Option(min=1, help="Seconds a ban lasts.")] = 3600.0,
    lab: Annotated[str | None, typer.Option(
        help="Serve this lab instance: its AMI and SIP ports, a firewall chain of its own.",
        show_default=False)] = None,
    popup_http: Annotated[bool, typer.Option(
        "--popup-http/--no-popup-http", help="GET the popup URL of users whose preferences "
        "ask for it (popup_http) when their phone rings; --no-popup-http: never.")] = True,
) -> None:
    """Run until stopped: keep the AMI connection, the PBX state, the call log and bans."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    served_gone = None
    if lab is not None:
        served = running_lab(lab)
        ports = served.ports
        ami_port = ami_port or ports.ami
        sip_port = sip_port or [ports.sip]
        chain = lab_chain(ports.sip) if chain == DEFAULT_CHAIN else chain

        def served_gone() -> bool:  # `lab down` stops this service too
            return not served.is_running()
    kept = never_ban_networks(never_ban, db)
    policy = BanPolicy.with_networks(kept, threshold=threshold, window=window,
                                     ban_time=ban_time)
    # with TLS on, the plain SIP port is the LAN's and the trunks' only
    plain = plain_sip_port(sip_port, db)
    try:
        enforcement = Firewall(sip_ports(sip_port, db), chain, plain_ports=plain,
                               plain_from=tuple(ipaddress.ip_network(n, strict=False)
                                                for n in kept) if plain else ()
                               ) if firewall else None
    except ValueError as e:
        raise ServiceError(f"--chain / --sip-port: {e}") from None
    settings = ami_settings(ami_host, ami_port, ami_user, given_secret(secret_file), db)
    from wildix_ast.services.agi.routes import StoreLookup

    lookup = StoreLookup(db) if popup_http else None
    try:
        asyncio.run(_serve(ServiceConfig(settings, state_dir, policy, firewall=enforcement,
                                         popup_lookup=lookup, served_gone=served_gone)))
    finally:
        if lookup is not None:
            lookup.close()


async def _serve(config: ServiceConfig) -> None:
    service = MonitorService(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    watchdog = asyncio.create_task(keep_alive())

    def ready() -> None:
        notify("READY=1")
        out.print(f"AMI service for {config.ami.where} running; state in {config.state_dir}")

    try:
        await service.run(ready)
    finally:
        notify("STOPPING=1")
        watchdog.cancel()


@app.command()
def status(
    state_dir: StateDir = DEFAULT_STATE,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The live PBX as the AMI service sees it; exit 9 when the service is down or cut off
    from Asterisk."""
    data = read_status(state_dir)
    ami = data["ami"]
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        pbx = data["pbx"]
        state = "[green]connected[/]" if ami["connected"] else "[red]not connected[/]"
        out.print(f"AMI {ami['address']}: {state}, Asterisk {pbx.get('version') or '?'}, "
                  f"{ami['connections']} connection(s)"
                  + (f", last error: {escape(ami['last_error'])}" if ami["last_error"] else ""))
        table = Table(title="devices", show_edge=False)
        table.add_column("device")
        table.add_column("state")
        for device, device_state in pbx["devices"].items():
            colour = "grey50" if device_state in ("UNAVAILABLE", "INVALID", "UNKNOWN") \
                else "green"
            table.add_row(escape(device), f"[{colour}]{device_state}[/]")
        out.print(table)
        out.print(f"{len(pbx['channels'])} channel(s) active, {len(data['bans'])} ban(s)")
    if not ami["connected"]:
        raise ServiceError(f"the AMI service is not connected to Asterisk at {ami['address']}"
                           f": {ami['last_error']}")


@app.command()
def call(
    uniqueid: Annotated[str | None, typer.Argument(help="A Uniqueid or Linkedid.")] = None,
    number: Annotated[str | None, typer.Option(help="A number that called or was called.")]
    = None,
    at: Annotated[str | None, typer.Option(help="Around this time (HH:MM or ISO date-time).")]
    = None,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    """WMS "Debug": print the events of one call (by id, or the last call of a number)."""
    log = read_log_files(state_dir / CALLS_FILE)
    if uniqueid:
        events = log.call(uniqueid)
        if not events:
            raise ServiceError(f"no call {uniqueid} in the log of {state_dir}")
    elif number:
        around = _when(at) if at else None
        found = log.find(number, around=around)
        if not found:
            raise ServiceError(f"no call of {number} in the log"
                               + (f" around {at}" if at else ""))
        events = log.call(found[-1])
    else:
        raise ServiceError("give a Uniqueid or --number")
    print(format_call(events))


def _when(text: str) -> float:
    try:
        if len(text) <= 5:
            hour, minute = (int(p) for p in text.split(":"))
            return dt.datetime.now().replace(hour=hour, minute=minute, second=0).timestamp()
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ServiceError(f"--at {text!r}: give HH:MM or an ISO date-time") from None
