"""`wildix-ast device add|list|assign|unassign|reset-password|remove|enrol|sync`: the phones
of WMS Devices, by MAC. A provisioning credential is printed once, when it is made or reset,
with the device's own provisioning link (docs/provisioning.md). `list` shows each phone
green (registered) or gray, from Asterisk; `sync` records what the registrations show
(address, model, firmware, when: docs/devices.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out

if TYPE_CHECKING:
    from wildix_ast.asterisk_cli import CliQueries
    from wildix_ast.services.ami.registrations import Contact
    from wildix_ast.store.store import Store

app = typer.Typer(help="Phones by MAC (WMS Devices): add, list, assign, reset their "
                       "provisioning password.", no_args_is_help=True)

MacArg = Annotated[str, typer.Argument(help="The MAC address (00:15:65:ab:cd:ef).",
                                       show_default=False)]
DbUrl = Annotated[str | None, typer.Option(
    "--db", envvar="WILDIX_AST_DB", show_envvar=True,
    help="Store: a SQLite file path or a database URL.")]
JsonOutput = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object on standard output (errors too).")]
LabName = Annotated[str | None, typer.Option(
    "--lab", help="Ask this lab instance's Asterisk (default: the host's).",
    show_default=False)]
Offline = Annotated[bool, typer.Option(
    "--offline", help="Do not ask Asterisk: no status column.")]


def _console(lab: str | None) -> CliQueries:
    from wildix_ast.apply.pipeline import Target
    from wildix_ast.lab.instance import running_lab

    return (running_lab(lab).target() if lab is not None else Target.host()).console()


def live_contacts(lab: str | None) -> tuple[list[Contact] | None, str | None]:
    """The PJSIP contacts, through Asterisk's root-only console, or (None, why not): a
    listing never fails because Asterisk is down or out of reach, it says so."""
    from wildix_ast.ami import run
    from wildix_ast.errors import WildixError
    from wildix_ast.services.ami.registrations import list_contacts

    async def ask() -> list[Contact]:
        async with _console(lab) as console:
            return await list_contacts(console)

    try:
        return run(ask()), None
    except WildixError as e:
        return None, e.message


def _mac(value: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    from wildix_ast.errors import Problem, SettingsError
    from wildix_ast.model import fields
    from wildix_ast.model.devices import Mac

    try:
        return str(TypeAdapter(Mac).validate_python(value))
    except ValidationError as exc:
        raise SettingsError("bad MAC address", [Problem(
            "mac", fields.message(exc.errors(include_url=False)[0]))]) from None


@app.command()
def add(
    mac: MacArg,
    vendor: Annotated[str, typer.Option(help="yealink, snom, grandstream or polycom.")],
    model: Annotated[str | None, typer.Option(help="The model (T54W, D785...).")] = None,
    user: Annotated[str | None, typer.Option(help="Assign it to this extension.")] = None,
    line: Annotated[int, typer.Option(min=1, max=16, help="The line on the phone.")] = 1,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Add a phone; print its provisioning password (once)."""
    from pydantic import ValidationError

    from wildix_ast.errors import Problem, SettingsError
    from wildix_ast.model import fields
    from wildix_ast.model.devices import Device
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import add_device

    mode.json = as_json
    try:
        device = Device(mac=mac, vendor=vendor, model=model, extension=user, line=line)
    except ValidationError as exc:
        raise SettingsError("the device is not valid", [
            Problem(".".join(str(p) for p in e["loc"]), fields.message(e))
            for e in exc.errors(include_url=False)]) from None
    with open_store(db) as store:
        credential = add_device(store, device)
        link = _link(store, credential)
    if as_json:
        emit_json({"ok": True, "mac": device.mac, "provisioning_password": credential,
                   "provisioning_link": link})
        return
    out.print(f"[green]✓[/] device {device.mac} added; provisioning password (shown once): "
              f"{credential}")
    _print_link(link)


@app.command("list")
def list_(db: DbUrl = None, lab: LabName = None, offline: Offline = False,
          as_json: JsonOutput = False) -> None:
    """List the phones (no credentials), each green (registered) or gray, from Asterisk."""
    from wildix_ast.services.ami.registrations import device_statuses
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import list_devices

    mode.json = as_json
    with open_store(db) as store:
        found = list_devices(store)
        contacts, problem = (None, "not asked (--offline)") if offline \
            else live_contacts(lab)
    statuses = {s.device.mac: s for s in device_statuses(found, contacts or [])}

    def status(mac: str) -> str:
        return "unknown" if contacts is None else statuses[mac].colour

    if as_json:
        emit_json({"ok": True, "status_error": problem, "devices": [
            {**d.model_dump(mode="json"), "status": status(d.mac)} for d in found]})
        return
    table = Table(title=f"{len(found)} devices", show_edge=False)
    for column in ("status", "MAC", "vendor", "model", "IP", "user", "line", "firmware",
                   "last seen"):
        table.add_column(column)
    marks = {"green": "[green]● green[/]", "gray": "[bright_black]● gray[/]",
             "unknown": "? unknown"}
    for d in found:
        table.add_row(marks[status(d.mac)], d.mac, d.vendor.value, escape(d.model or "—"),
                      d.ip or "—", d.extension or "—", str(d.line),
                      escape(d.firmware or "—"),
                      f"{d.last_seen:%Y-%m-%d %H:%M}" if d.last_seen else "never")
    out.print(table)
    if problem is not None:
        out.print(f"status unknown: {escape(problem)}")


@app.command()
def sync(db: DbUrl = None, lab: LabName = None, as_json: JsonOutput = False) -> None:
    """Record what the registrations show of each registered phone: its address, model
    and firmware (from its User-Agent), and when."""
    from datetime import UTC, datetime

    from wildix_ast.ami import run
    from wildix_ast.errors import ServiceError
    from wildix_ast.services.ami.registrations import (
        contact_details,
        device_statuses,
        model_and_firmware,
    )
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import list_devices
    from wildix_ast.store.handset import record_seen

    mode.json = as_json
    now = datetime.now(UTC)
    seen: list[str] = []
    with open_store(db) as store:
        found = list_devices(store)
        contacts, problem = live_contacts(lab)
        if contacts is None:
            raise ServiceError(f"cannot read the registrations: {problem}")
        registered = [s for s in device_statuses(found, contacts) if s.contact is not None]

        async def details() -> list[Contact | None]:
            async with _console(lab) as console:
                return [await contact_details(console, s.contact.endpoint)
                        for s in registered if s.contact is not None]

        for status, contact in zip(registered, run(details()), strict=True):
            if contact is None:
                continue
            model, firmware = model_and_firmware(contact.user_agent)
            record_seen(store, status.device.mac, ip=contact.ip or None, model=model,
                        firmware=firmware, at=now)
            seen.append(status.device.mac)
    if as_json:
        emit_json({"ok": True, "devices": len(found), "seen": seen})
        return
    out.print(f"[green]✓[/] {len(seen)} of {len(found)} devices registered; recorded")


@app.command("assign")
def assign_(
    mac: MacArg,
    user: Annotated[str, typer.Argument(help="The user's extension.", show_default=False)],
    line: Annotated[int, typer.Option(min=1, max=16, help="The line on the phone.")] = 1,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Assign a phone to a user."""
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import assign

    mode.json = as_json
    key = _mac(mac)
    with open_store(db) as store:
        assign(store, key, user, line)
    _done(as_json, key, f"assigned to {user} (line {line})")


@app.command()
def unassign(mac: MacArg, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """Take a phone from its user."""
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import assign

    mode.json = as_json
    key = _mac(mac)
    with open_store(db) as store:
        assign(store, key, None)
    _done(as_json, key, "unassigned")


@app.command("reset-password")
def reset_password(mac: MacArg, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """A new provisioning password (printed once); the old one stops working."""
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import reset_credential

    mode.json = as_json
    key = _mac(mac)
    with open_store(db) as store:
        credential = reset_credential(store, key)
        link = _link(store, credential)
    if as_json:
        emit_json({"ok": True, "mac": key, "provisioning_password": credential,
                   "provisioning_link": link})
        return
    out.print(f"[green]✓[/] {key}: new provisioning password (shown once): {credential}")
    _print_link(link)


def _link(store: Store, credential: str) -> str | None:
    """The device's own provisioning link (None until provisioning.address is set)."""
    if not store.has_site():
        return None
    return store.export_site().provisioning.link(credential)


def _print_link(link: str | None) -> None:
    if link is None:
        out.print("  provisioning link: none yet (set provisioning.address in the settings)")
    else:
        out.print(f"  provisioning link (the phone's provisioning server URL): {link}")


@app.command()
def enrol(
    minutes: Annotated[int | None, typer.Option(
        min=0, max=1440, help="How long the window stays open (0: close it now). Default: "
        "the settings' provisioning.enrol_minutes.")] = None,
    vendor: Annotated[list[str] | None, typer.Option(
        help="Only this vendor's phones; repeat. Default: all four.")] = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Open an enrolment window: unknown phones of the vendors that ask meanwhile are added,
    unassigned (no SIP secret until you assign them)."""
    from wildix_ast.errors import Problem, SettingsError
    from wildix_ast.model.devices import Vendor
    from wildix_ast.store import open_store
    from wildix_ast.store.provisioning import close_enrolment, open_enrolment

    mode.json = as_json
    try:
        vendors = tuple(Vendor(v.lower()) for v in vendor) if vendor else tuple(Vendor)
    except ValueError as exc:
        raise SettingsError("bad vendor", [Problem("--vendor", str(exc))]) from None
    with open_store(db) as store:
        settings = store.export_site().provisioning if store.has_site() else None
        length = minutes if minutes is not None else \
            settings.enrol_minutes if settings is not None else 30
        if length == 0:
            close_enrolment(store)
            if as_json:
                emit_json({"ok": True, "open": False})
            else:
                out.print("[green]✓[/] enrolment window closed")
            return
        window = open_enrolment(store, length, vendors)
    base = settings.base_url() if settings is not None else None
    if as_json:
        emit_json({"ok": True, "open": True, "until": window.until.isoformat(),
                   "vendors": [v.value for v in window.vendors],
                   "enrolment_url": f"{base}/enrol/" if base else None})
        return
    out.print(f"[green]✓[/] enrolment open until {window.until:%Y-%m-%d %H:%M:%S} UTC for "
              f"{', '.join(v.value for v in window.vendors)}; point phones (DHCP option 66) "
              f"at {base + '/enrol/' if base else '<provisioning.address not set>'}")


@app.command()
def remove(mac: MacArg, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """Forget a phone and its provisioning password."""
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import remove_device

    mode.json = as_json
    key = _mac(mac)
    with open_store(db) as store:
        remove_device(store, key)
    _done(as_json, key, "removed")


def _done(as_json: bool, mac: str, what: str) -> None:
    if as_json:
        emit_json({"ok": True, "mac": mac})
    else:
        out.print(f"[green]✓[/] device {mac} {what}")


HandsetLogins = Annotated[Path | None, typer.Option(
    "--handset-logins", envvar="WILDIX_AST_HANDSET_LOGINS", show_envvar=True,
    help="The FastAGI service's count of refused handset logins. Default: "
         "~/.local/share/wildix-ast/handset-logins.sqlite3.")]


@app.command("login-locks")
def login_locks(logins: HandsetLogins = None, as_json: JsonOutput = False) -> None:
    """Devices and users whose handset login (feature code 99) is locked after refused
    PINs (docs/devices.md)."""
    from wildix_ast.cli.voicemail import locks_table
    from wildix_ast.services.agi.voicemail_logins import LoginGuard, handset_logins_path

    mode.json = as_json
    found = LoginGuard(logins or handset_logins_path(), event="Handset").locks()
    if as_json:
        emit_json({"ok": True, "locks": [
            {"locked": lock.mailbox, "failures": lock.failures, "until": lock.until}
            for lock in found]})
        return
    out.print(locks_table("locked handset logins", ("locked", "refusals"), found))


@app.command("login-unlock")
def login_unlock(
    what: Annotated[str, typer.Argument(
        help="A device's MAC, or a user's extension.", show_default=False)],
    logins: HandsetLogins = None,
    as_json: JsonOutput = False,
) -> None:
    """Forget the refused handset logins of a device (MAC) or a user (extension): the lock
    lifts at once (logged as a security event)."""
    from wildix_ast.services.agi.handset_routes import device_key, user_key
    from wildix_ast.services.agi.voicemail_logins import LoginGuard, handset_logins_path

    mode.json = as_json
    key = user_key(what) if what.isdigit() and 2 <= len(what) <= 8 else device_key(_mac(what))
    guard = LoginGuard(logins or handset_logins_path(), event="Handset")
    was_locked = guard.locked(key) is not None
    cleared = guard.clear(key)
    if as_json:
        emit_json({"ok": True, "unlocked": key, "was_locked": was_locked,
                   "failures_cleared": cleared})
        return
    out.print(f"[green]✓[/] {key} {'unlocked' if was_locked else 'was not locked'}; "
              f"{cleared} refusal(s) forgotten")
