"""What the provisioning server reads and writes in the store: one device and its kept
credential hash, the enrolment window (`wildix-ast device enrol`), phones enrolled during
it, and when a phone was last served (its address and firmware).

Every change is one transaction; enrolling a MAC that another request enrolled meanwhile
fails on the devices table's key and is refused (a MAC is enrolled once, never taken over)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from wildix_ast.model.devices import Device, Vendor
from wildix_ast.store.devices import (
    _device,
    _writing,
    credential_hash,
    new_credential,
    provisioning_key,
)

if TYPE_CHECKING:
    from wildix_ast.store.store import Store


@dataclass(frozen=True)
class Enrolment:
    """An open enrolment window."""

    until: datetime
    vendors: tuple[Vendor, ...]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def device_with_hash(store: Store, mac: str) -> tuple[Device, str | None] | None:
    """The device with this MAC and its kept credential hash (one query); None if
    unknown."""
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import devices
    from wildix_ast.store.tables import secrets as secret_table

    query = select(devices, secret_table.c.value.label("kept_hash")).outerjoin(
        secret_table, secret_table.c.key == provisioning_key(mac)).where(devices.c.mac == mac)
    with translated(store.where, "reading a device"), store.engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return _device(row), row.kept_hash


def open_enrolment(store: Store, minutes: int, vendors: tuple[Vendor, ...],
                   now: datetime | None = None) -> Enrolment:
    """Open (or extend, or narrow) the window: unknown phones of `vendors` asking within
    `minutes` are added, unassigned."""
    from sqlalchemy import delete, insert

    from wildix_ast.store.tables import provisioning_state

    until = (now or datetime.now(UTC)) + timedelta(minutes=minutes)
    with _writing(store, "opening the enrolment window") as connection:
        connection.execute(delete(provisioning_state))
        connection.execute(insert(provisioning_state).values(
            id=1, enrol_until=until, enrol_vendors=",".join(v.value for v in vendors)))
    return Enrolment(until, vendors)


def close_enrolment(store: Store) -> None:
    from sqlalchemy import delete

    from wildix_ast.store.tables import provisioning_state

    with _writing(store, "closing the enrolment window") as connection:
        connection.execute(delete(provisioning_state))


def enrolment(store: Store, now: datetime | None = None) -> Enrolment | None:
    """The window, if open now."""
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import provisioning_state

    with translated(store.where, "reading the enrolment window"), \
            store.engine.connect() as connection:
        row = connection.execute(select(provisioning_state)).first()
    if row is None or row.enrol_until is None:
        return None
    until = _aware(row.enrol_until)
    if until <= (now or datetime.now(UTC)):
        return None
    return Enrolment(until, tuple(Vendor(v) for v in row.enrol_vendors.split(",") if v))


def enrol(store: Store, mac: str, vendor: Vendor, ip: str | None,
          now: datetime | None = None) -> str | None:
    """Add an unknown phone as an unassigned device if the window is open for its vendor;
    its new credential (to be served once, in its configuration), else None."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from wildix_ast.errors import StoreError
    from wildix_ast.store.tables import devices, provisioning_state
    from wildix_ast.store.tables import secrets as secret_table

    moment = now or datetime.now(UTC)
    credential = new_credential()
    try:
        with _writing(store, "enrolling a device") as connection:
            window = connection.execute(select(provisioning_state)).first()
            if window is None or window.enrol_until is None \
                    or _aware(window.enrol_until) <= moment \
                    or vendor.value not in window.enrol_vendors.split(","):
                return None
            if connection.execute(select(devices.c.mac).where(
                    devices.c.mac == mac)).first() is not None:
                return None
            connection.execute(insert(devices).values(
                mac=mac, vendor=vendor.value, model=None, extension=None, line=1, ip=ip,
                firmware=None, added_at=moment, last_seen=moment))
            key = provisioning_key(mac)
            connection.execute(secret_table.delete().where(secret_table.c.key == key))
            connection.execute(insert(secret_table).values(
                key=key, value=credential_hash(mac, credential)))
    except StoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return None  # enrolled by a concurrent request: that one holds the credential
        raise
    return credential


@dataclass(frozen=True)
class Fetch:
    """A phone fetched its file: when, from where, the model and firmware its User-Agent
    said (None: unknown, the stored ones are kept)."""

    mac: str
    ip: str
    at: datetime
    model: str | None = None
    firmware: str | None = None


def seen(store: Store, fetches: list[Fetch]) -> None:
    """Record the fetches (last_seen, IP, model, firmware) in one transaction: the server
    gathers them and writes once a second, not once per request (a SQLite commit per
    fetch was half of each request's time)."""
    from sqlalchemy import update

    from wildix_ast.store.tables import devices

    if not fetches:
        return
    with _writing(store, "recording devices' fetches") as connection:
        for fetch in fetches:
            values: dict[str, object] = {"last_seen": fetch.at, "ip": fetch.ip}
            if fetch.model:
                values["model"] = fetch.model[:80]
            if fetch.firmware:
                values["firmware"] = fetch.firmware[:80]
            connection.execute(update(devices).where(devices.c.mac == fetch.mac)
                               .values(**values))
