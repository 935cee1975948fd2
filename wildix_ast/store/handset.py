"""The store's side of handset login and device status: the assignment a login or logout
writes (compare-and-set, one transaction, the same discipline as `device assign`), the PIN
a login is checked against, and what `device sync` records of a registered phone (address,
model and firmware from its User-Agent, when it was seen).

A login changes a device only if it is still in the state the decision saw: two people
logging in on one phone at once (or a login racing an admin's `device assign`) give one
winner, and the loser is told to try again; nothing is half-written."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from wildix_ast.store.devices import DeviceError, _check_user, _writing, list_devices

if TYPE_CHECKING:
    from wildix_ast.model.devices import Device
    from wildix_ast.store.store import Store

__all__ = ["devices_for_login", "hot_desk_key", "hot_desk_secrets", "login_pin",
           "record_seen", "swap_assignment"]


def hot_desk_key(mac: str) -> str:
    """The vault key of the SIP password of the device's hot-desk endpoint."""
    return f"device:{mac}:sip"


def hot_desk_secrets(store: Store) -> tuple[tuple[str, str], ...]:
    """(MAC, SIP password) of every device's hot-desk endpoint, by MAC; passwords missing
    from the vault are generated and kept (in one transaction)."""
    from wildix_ast.model.passwords import generate_password
    from wildix_ast.store.vault import _kept_or_generated_all

    if store.access.sqlite_file is not None:
        # sqlite3: a render of a SQLite store loads no SQLAlchemy (tests/live/test_speed.py)
        with store.access.sqlite("reading devices") as connection:
            macs = [str(r[0]) for r in connection.execute("SELECT mac FROM devices ORDER BY mac")]
    else:
        macs = [d.mac for d in list_devices(store)]
    if not macs:
        return ()
    kept = _kept_or_generated_all(store, [hot_desk_key(m) for m in macs], generate_password)
    return tuple((m, kept[hot_desk_key(m)]) for m in macs)


def devices_for_login(store: Store) -> list[Device]:
    """Every device (a few hundred rows at most in an office: read whole)."""
    return list_devices(store)


def login_pin(store: Store, extension: str) -> str | None:
    """The PIN a handset login as `extension` is checked against: the user's voicemail PIN
    (digits, generated once and kept in the vault); None for no such user with a phone."""
    from wildix_ast.store.vault import user_secret_key

    user = store.user_by_extension(extension)
    if user is None or not user.type.has_phone:
        return None
    return store.get_secret(user_secret_key(extension, "voicemail_pin"))


def swap_assignment(store: Store, mac: str, expected: str | None, extension: str | None,
                    line: int = 1) -> bool:
    """Assign the device to `extension` (None: unassign) if it is still assigned to
    `expected`; False (nothing written) if it changed meanwhile."""
    from sqlalchemy import update

    from wildix_ast.store.tables import devices

    with _writing(store, "assigning a device from the handset") as connection:
        if extension is not None:
            _check_user(connection, extension)
        current = (devices.c.extension.is_(None) if expected is None
                   else devices.c.extension == expected)
        done = connection.execute(update(devices).where(
            devices.c.mac == mac, current).values(extension=extension, line=line)).rowcount
    return bool(done)


def record_seen(store: Store, mac: str, *, ip: str | None, model: str | None,
                firmware: str | None, at: datetime) -> None:
    """What a registration shows of the device: its address, model and firmware (kept when
    not shown), and when."""
    from sqlalchemy import update

    from wildix_ast.store.tables import devices

    values: dict[str, object] = {"last_seen": at}
    values.update({k: val for k, val in (("ip", ip), ("model", model),
                                         ("firmware", firmware)) if val})
    with _writing(store, "recording a device's registration") as connection:
        if not connection.execute(update(devices).where(devices.c.mac == mac).values(
                **values)).rowcount:
            raise DeviceError(f"no device {mac}")
