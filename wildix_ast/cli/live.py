"""The top-level verbs a person runs against the live PBX: `wildix-ast status`,
`wildix-ast test-call` and `wildix-ast security bans|unban`. Thin: they gather, call the
use cases (`overview`, `originate`, `unban.unban_now`) and print."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, err, mode, out
from wildix_ast.cli.runtime import DEFAULT_STATE, StateDir
from wildix_ast.errors import ServiceError, SettingsError, WildixError
from wildix_ast.services.ami.ban_file import load_bans
from wildix_ast.services.ami.service import read_status

JsonOutput = Annotated[bool, typer.Option(
    "--json", help="One JSON object on standard output (errors too).")]
DbUrl = Annotated[str | None, typer.Option(
    "--db", envvar="WILDIX_AST_DB", show_envvar=True, help="The store.")]
AgiHost = Annotated[str | None, typer.Option(
    "--agi-host", envvar="WILDIX_AST_AGI_HOST",
    help="The FastAGI service's address (default: the stored site's system.fastagi).")]
AgiPort = Annotated[int | None, typer.Option(
    "--agi-port", envvar="WILDIX_AST_AGI_PORT", min=1, max=65535,
    help="The FastAGI service's port (default: the stored site's system.fastagi).")]


def _stored_site(db: str | None) -> Any:
    from wildix_ast.store import open_store

    with open_store(db) as store:
        if not store.has_site():
            raise WildixError("the store holds no site yet: run `wildix-ast import SITE` "
                              "first")
        return store.export_site()


def status(
    state_dir: StateDir = DEFAULT_STATE,
    agi_host: AgiHost = None,
    agi_port: AgiPort = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The PBX at a glance: each user green (phone reachable) or gray, the calls in
    progress, the services' health. Exit 9 when a service is down."""
    from wildix_ast.cli.agi import check
    from wildix_ast.services.ami.overview import build

    mode.json = as_json
    site = _stored_site(db)
    runtime: dict[str, Any] | str
    try:
        runtime = read_status(state_dir)
    except ServiceError as e:
        runtime = e.message
    agi: dict[str, str] | str
    # where the site's dialplan asks the service, unless told otherwise
    fastagi = site.system.fastagi
    try:
        agi = asyncio.run(check(agi_host or str(fastagi.host), agi_port or fastagi.port, 1.0))
    except ServiceError as e:
        agi = e.message
    view = build(site.users, runtime, agi)
    if as_json:
        emit_json(view.to_json())
    else:
        _print_overview(view)
    if not view.ok:
        # the view (JSON included) is the answer; the exit code says a service is down
        down = [s.name for s in view.services if not s.ok]
        err.print(f"[red]not healthy:[/] {', '.join(down)}")
        raise typer.Exit(ServiceError.exit_code)


def _print_overview(view: Any) -> None:
    users = Table(title="users", show_edge=False)
    for column in ("", "extension", "name", "device", "registered"):
        users.add_column(column)
    for user in view.users:
        registered = {True: "yes", False: "no", None: "?"}[user.registered]
        users.add_row(f"[{'green' if user.online else 'grey50'}]●[/]", user.extension,
                      escape(user.name), user.device_state or "-", registered)
    out.print(users)
    online = sum(1 for u in view.users if u.online)
    out.print(f"{online} of {len(view.users)} phones reachable")
    if view.calls:
        calls = Table(title="calls in progress", show_edge=False)
        for column in ("call", "from", "to", "state", "channels"):
            calls.add_column(column)
        for call in view.calls:
            calls.add_row(call.call, escape(call.caller), escape(call.callee), call.state,
                          escape(", ".join(call.channels)))
        out.print(calls)
    else:
        out.print("no call in progress")
    services = Table(title="services", show_edge=False)
    for column in ("", "service", "detail"):
        services.add_column(column)
    for service in view.services:
        services.add_row("[green]✓[/]" if service.ok else "[red]✗[/]", service.name,
                         escape(service.detail))
    out.print(services)
    if view.bans:
        out.print(f"{len(view.bans)} address(es) banned: "
                  + ", ".join(str(b["address"]) for b in view.bans))


def test_call(
    number: Annotated[str, typer.Argument(help="The number to call (an extension rings "
                                          "that user's phone).", show_default=False)] = "",
    caller: Annotated[str | None, typer.Option(
        "--from", help="Call as this user (their ACL group, caller ID and procedure).")]
    = None,
    procedure: Annotated[str | None, typer.Option(
        help="The dialplan procedure the call goes through (default: the --from user's, "
        "else `users`).")] = None,
    echo: Annotated[bool, typer.Option("--echo", help="Call the echo test.")] = False,
    ring_timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for an "
                                                "answer.")] = 30.0,
    hold: Annotated[float, typer.Option(min=0, help="Seconds the answered call stays "
                                        "up.")] = 3.0,
    lab: Annotated[str | None, typer.Option(
        help="Place it on this lab instance (its AMI port).", show_default=False)] = None,
    ami_port: Annotated[int | None, typer.Option(
        envvar="WILDIX_AST_AMI_PORT", help="Default: the stored site's manager port.")]
    = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """WMS "Générer un appel": the PBX places a call through a dialplan procedure (to a
    number, a user's phone or the echo test) and prints what happened: answered (and for
    how long), busy, no answer or failed, with Asterisk's cause. Exit 1 unless answered."""
    from wildix_ast.lab.instance import running_lab
    from wildix_ast.services.ami.account import ami_settings
    from wildix_ast.services.ami.originate import place, request_for

    mode.json = as_json
    site = _stored_site(db)
    request = request_for(site, number, caller=caller, procedure=procedure, echo=echo,
                          ring_timeout=ring_timeout, hold=hold)
    from wildix_ast.apply.pipeline import Target

    # the originate goes through Asterisk's root-only console; the AMI service's account
    # (events only) follows the call
    if lab is not None:
        running = running_lab(lab)
        ami_port = running.ports.ami
        target = running.target()
    else:
        target = Target.host()
    settings = ami_settings("127.0.0.1", ami_port, None, "", db, timeout=5.0)

    async def run() -> Any:
        async with settings.client() as client, target.console() as console:
            return await place(client, console, request)

    result = asyncio.run(run())
    if as_json:
        emit_json({**result.to_json(), "number": request.number, "context": request.context})
    else:
        colour = "green" if result.ok else "red"
        out.print(f"[{colour}]{result.result}[/]: {request.number} through {request.context}"
                  f" ({_describe(result)}); {result.channels_left} channel(s) left")
    if not result.ok and as_json:
        raise typer.Exit(WildixError.exit_code)  # the JSON printed is the answer
    if not result.ok:
        raise WildixError(f"the test call to {request.number} was not answered: "
                          f"{result.result}" if result.result != "answered"
                          else f"{result.channels_left} channel(s) of the test call left")


def _describe(result: Any) -> str:
    parts = []
    if result.result == "answered":
        if result.application:
            parts.append(f"by {result.application}")
        parts.append(f"after {result.answered_after:.1f} s")
        if result.duration is not None:
            parts.append(f"lasted {result.duration:.1f} s")
    else:
        parts.append(result.reason)
        if result.cause:
            parts.append(f"cause {result.cause} {result.cause_text}")
    return ", ".join(parts)


security_app = typer.Typer(help='WMS "SIP bloqués": addresses banned after failed SIP '
                           "authentications.", no_args_is_help=True)


@security_app.command("bans")
def bans(state_dir: StateDir = DEFAULT_STATE, as_json: JsonOutput = False) -> None:
    """The addresses banned now (the AMI service's, enforced by its firewall chain)."""
    mode.json = as_json
    now = time.time()
    active = sorted((b for b in load_bans(state_dir).values() if b.until > now),
                    key=lambda b: b.since)
    if as_json:
        emit_json({"ok": True, "bans": [b.to_json() for b in active]})
        return
    table = Table(title="banned addresses", show_edge=False)
    for column in ("address", "since", "until", "attempts", "reason"):
        table.add_column(column)
    for ban in active:
        table.add_row(ban.address, dt.datetime.fromtimestamp(ban.since).strftime("%F %T"),
                      dt.datetime.fromtimestamp(ban.until).strftime("%F %T"),
                      str(ban.attempts), escape(ban.reason))
    out.print(table)


@security_app.command("unban")
def unban(address: Annotated[str, typer.Argument(help="The banned IP address.")],
          state_dir: StateDir = DEFAULT_STATE) -> None:
    """Lift one ban, in the ban list and in the firewall at once (also while the AMI
    service is not running). Exit 9 when the firewall rule could not be lifted."""
    from wildix_ast.services.ami.unban import Kernel, unban_now

    try:
        done = unban_now(state_dir, address)
    except ValueError:
        raise SettingsError(f"{address!r} is not an IP address") from None
    if not done.banned_before:
        raise WildixError(f"{done.address} is not banned")
    chain = f"firewall chain {done.chain}"
    if done.kernel is Kernel.FAILED:
        raise ServiceError(f"{done.address} is unbanned in {state_dir}, but the {chain} still "
                           f"drops its SIP packets until the AMI service runs again: "
                           f"{done.error}")
    kernel = {
        Kernel.LIFTED: f"the {chain} no longer drops it",
        Kernel.NOT_DROPPED: f"the {chain} was not dropping it",
        Kernel.NO_CHAIN: f"no {chain} in place: nothing was enforced",
        Kernel.NOT_ENFORCED: "the AMI service does not enforce bans (--no-firewall)",
        Kernel.UNKNOWN: "the AMI service's firewall is not known here (no status in "
                        f"{state_dir}); a running service lifts its rule within a second",
    }[done.kernel]
    listed = "" if done.listed else " (it was no longer listed)"
    out.print(f"[green]✓[/] {done.address} unbanned{listed}; {escape(kernel)}")
