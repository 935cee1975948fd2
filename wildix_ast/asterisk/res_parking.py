"""res_parking.conf: one parking lot per park orbit user (WMS Users, type `park_orbit`).

Each orbit is a lot of one space, its own extension, so a call parked there is known by the
orbit's number (device state `park:<orbit>@orbit-<orbit>` for BLF keys); an unanswered
parked call goes back to whoever parked it. No `parkext`: the dialplan decides when dialling
an orbit parks a call or picks it up (the routing work adds those extensions).
"""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.users import UserType

PARKING_TIME = 45  # seconds before a parked call rings back whoever parked it


@dataclass(frozen=True)
class Lot:
    name: str
    space: str


def lot_name(extension: str) -> str:
    return f"orbit-{extension}"


def _view(given: RenderInput) -> View:
    return {
        "lots": [Lot(lot_name(u.extension), u.extension)
                 for u in given.site.users if u.type is UserType.PARK_ORBIT],
        "parking_time": PARKING_TIME,
    }


FILE = ConfigFile(
    name="res_parking.conf",
    applied_by=Reload("res_parking.so", "module reload res_parking.so", order=40),
    view=_view,
    modules=static_modules("res_parking.so"),
)
