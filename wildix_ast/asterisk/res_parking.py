"""res_parking.conf: one parking lot per park orbit user (WMS Users, type `park_orbit`).

Each orbit is a lot of one space, its own extension, so a call parked there is known by the
orbit's number (device state `park:<orbit>@orbit-<orbit>` for BLF keys); an unanswered
parked call goes back to whoever parked it. No `parkext`: the dialplan decides when dialling
an orbit parks a call or picks it up (`orbits()`, laid out in extensions.conf): a call
blind-transferred to the orbit is parked there (res_parking takes the transferer as the one
who parked it, from the channel's BLINDTRANSFER, so that is where it comes back); anyone
else dialling the orbit takes the call parked there, or hears that none is (ParkedCall's
own `pbx-invalidpark` prompt, in the caller's language).
"""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.model.site import Site
from wildix_ast.model.users import UserType

PARKING_TIME = 45  # seconds before a parked call rings back whoever parked it


@dataclass(frozen=True)
class Lot:
    name: str
    space: str


def lot_name(extension: str) -> str:
    return f"orbit-{extension}"


@dataclass(frozen=True)
class Orbit:
    """A park orbit's extension in the dialplan."""

    number: str
    lot: str

    @property
    def device(self) -> str:
        """Its device state (BLF): in use while a call is parked there."""
        return f"park:{self.number}@{self.lot}"


def orbits(site: Site) -> list[Orbit]:
    return [Orbit(u.extension, lot_name(u.extension))
            for u in site.users if u.type is UserType.PARK_ORBIT]


def _view(given: RenderInput) -> View:
    return {
        "lots": [Lot(o.lot, o.number) for o in orbits(given.site)],
        "parking_time": PARKING_TIME,
    }


FILE = ConfigFile(
    name="res_parking.conf",
    applied_by=Reload("res_parking.so", "module reload res_parking.so", order=40),
    view=_view,
    modules=static_modules("res_parking.so"),
)
