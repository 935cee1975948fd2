"""The devices (WMS Devices) in the store: phones by MAC, their assignment to a user and
line, and their provisioning credential (shown once when made or reset; the vault keeps only
its hash, `credential_hash`).

Each change is one transaction. A device's assignment never outlives its user: assigning
checks the user exists (and has a phone), and `unassign_missing_users` clears the
assignments of removed users (called by every command that removes users)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wildix_ast.errors import WildixError
from wildix_ast.model.devices import Device, Vendor

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wildix_ast.store.store import Store

TOKEN_BYTES = 24


class DeviceError(WildixError):
    """A device command names an unknown device or user, or a MAC already known."""

    exit_code = 1


def provisioning_key(mac: str) -> str:
    return f"device:{mac}:provisioning"


CREDENTIAL_LABEL = b"wildix-ast provisioning credential v1"
HASH_PREFIX = "h1:"


def credential_hash(mac: str, credential: str) -> str:
    """What the vault keeps of a device's credential. The credential is 192 random bits,
    so a fast hash is enough (no guess can be tested faster than the 2^192 it would take);
    HMAC under a fixed label, with the MAC in the message, keeps one device's hash useless
    for another. Migration 0019 has a frozen copy."""
    message = f"{mac}\0{credential}".encode()
    return HASH_PREFIX + hmac.new(CREDENTIAL_LABEL, message, hashlib.sha256).hexdigest()


def credential_matches(mac: str, credential: str, kept: str | None) -> bool:
    """Constant-time: a request's credential against the kept hash (None: none kept)."""
    expected = credential_hash(mac, credential)
    return kept is not None and hmac.compare_digest(expected.encode(), kept.encode())


def new_credential() -> str:
    """A provisioning credential: 192 random bits, URL-safe (it goes in the device's link)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


@contextmanager
def _writing(store: Store, action: str) -> Iterator[Connection]:
    from wildix_ast.store.database import translated, writing

    with translated(store.where, action), writing(store.engine) as connection:
        yield connection


def _device(row: Any) -> Device:
    return Device(mac=row.mac, vendor=Vendor(row.vendor), model=row.model,
                  extension=row.extension, line=row.line, ip=row.ip, firmware=row.firmware,
                  last_seen=row.last_seen.replace(tzinfo=UTC)
                  if row.last_seen is not None and row.last_seen.tzinfo is None
                  else row.last_seen)


def list_devices(store: Store) -> list[Device]:
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import devices

    with translated(store.where, "reading devices"), store.engine.connect() as connection:
        return [_device(r) for r in connection.execute(
            select(devices).order_by(devices.c.mac))]


def add_device(store: Store, device: Device) -> str:
    """Add an unassigned or assigned device; its new provisioning credential."""
    from sqlalchemy import insert, select

    from wildix_ast.store.tables import devices
    from wildix_ast.store.tables import secrets as secret_table

    credential = new_credential()
    with _writing(store, "adding a device") as connection:
        if connection.execute(select(devices.c.mac).where(
                devices.c.mac == device.mac)).first() is not None:
            raise DeviceError(f"device {device.mac} is known already")
        if device.extension is not None:
            _check_user(connection, device.extension)
        connection.execute(insert(devices).values(
            mac=device.mac, vendor=device.vendor.value, model=device.model,
            extension=device.extension, line=device.line, ip=device.ip,
            firmware=device.firmware, added_at=datetime.now(UTC)))
        key = provisioning_key(device.mac)
        connection.execute(secret_table.delete().where(secret_table.c.key == key))
        connection.execute(insert(secret_table).values(
            key=key, value=credential_hash(device.mac, credential)))
    return credential


def _check_user(connection: Connection, extension: str) -> None:
    from sqlalchemy import select

    from wildix_ast.model.users import UserType
    from wildix_ast.store.tables import users

    found = connection.execute(select(users.c.type).where(
        users.c.extension == extension)).first()
    if found is None:
        raise DeviceError(f"no user has extension {extension}")
    if not UserType(found.type).has_phone:
        raise DeviceError(f"{extension} is a park orbit: it has no phone")


def assign(store: Store, mac: str, extension: str | None, line: int = 1) -> None:
    """Assign the device to a user's line (None: unassign)."""
    from sqlalchemy import update

    from wildix_ast.store.tables import devices

    with _writing(store, "assigning a device") as connection:
        if extension is not None:
            _check_user(connection, extension)
        done = connection.execute(update(devices).where(devices.c.mac == mac).values(
            extension=extension, line=line)).rowcount
        if not done:
            raise DeviceError(f"no device {mac}")


def reset_credential(store: Store, mac: str) -> str:
    """A new provisioning credential for the device; the old one stops working at once."""
    from sqlalchemy import insert, select

    from wildix_ast.store.tables import devices
    from wildix_ast.store.tables import secrets as secret_table

    credential = new_credential()
    with _writing(store, "resetting a device's credential") as connection:
        if connection.execute(select(devices.c.mac).where(devices.c.mac == mac)).first() \
                is None:
            raise DeviceError(f"no device {mac}")
        key = provisioning_key(mac)
        connection.execute(secret_table.delete().where(secret_table.c.key == key))
        connection.execute(insert(secret_table).values(
            key=key, value=credential_hash(mac, credential)))
    return credential


def remove_device(store: Store, mac: str) -> None:
    from sqlalchemy import delete

    from wildix_ast.store.tables import devices
    from wildix_ast.store.tables import secrets as secret_table

    with _writing(store, "removing a device") as connection:
        if not connection.execute(delete(devices).where(devices.c.mac == mac)).rowcount:
            raise DeviceError(f"no device {mac}")
        # the provisioning credential and the hot-desk endpoint's SIP password
        connection.execute(delete(secret_table).where(
            secret_table.c.key.in_((provisioning_key(mac), f"device:{mac}:sip"))))


def unassign_missing_users(store: Store) -> int:
    """Clear the assignment of devices whose user is gone; how many."""
    from sqlalchemy import select, update

    from wildix_ast.store.tables import devices, users

    with _writing(store, "unassigning devices of removed users") as connection:
        return int(connection.execute(update(devices).where(
            devices.c.extension.is_not(None),
            devices.c.extension.not_in(select(users.c.extension))).values(
                extension=None, line=1)).rowcount)
