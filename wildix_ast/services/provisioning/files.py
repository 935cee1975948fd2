"""The configuration files each vendor's phones ask for, by name: which file names carry
a MAC, and what each vendor's MAC file is called (the vendors' provisioning guides).

| vendor | file | format |
|---|---|---|
| Yealink | `<mac>.cfg` | `key = value` lines |
| Snom | `<mac>.xml` (`setting_server` link), `snom<model>-<MAC>.htm` (default) | XML |
| Grandstream | `cfg<mac>.xml` | `gs_provision` XML of P-values |
| Polycom | `<mac>.cfg` (master), `<mac>-phone.cfg` (the phone's settings) | XML |

Names that carry no MAC (`y000000000044.cfg`, `000000000000.cfg`, `cfg.xml`,
`snomD785.htm`...) are the vendors' common files: wildix-ast serves none (every setting is
in the MAC file), answers 404 and does not count them as misses when the request's
credential is good."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from wildix_ast.model.devices import Vendor


class FileKind(StrEnum):
    """Which file of a phone: its main file, or Polycom's second (`-phone.cfg`)."""

    MAIN = "main"
    PHONE = "phone"


@dataclass(frozen=True)
class FileRequest:
    """A file name that names one phone: its MAC, the vendors that use this name, which
    file of the phone it is."""

    mac: str
    vendors: tuple[Vendor, ...]
    kind: FileKind = FileKind.MAIN


_PATTERNS: tuple[tuple[re.Pattern[str], tuple[Vendor, ...], FileKind], ...] = (
    (re.compile(r"([0-9a-f]{12})\.cfg"), (Vendor.YEALINK, Vendor.POLYCOM), FileKind.MAIN),
    (re.compile(r"([0-9a-f]{12})-phone\.cfg"), (Vendor.POLYCOM,), FileKind.PHONE),
    (re.compile(r"([0-9a-f]{12})\.xml"), (Vendor.SNOM,), FileKind.MAIN),
    (re.compile(r"snom[a-z0-9]{1,16}-([0-9a-f]{12})\.htm"), (Vendor.SNOM,), FileKind.MAIN),
    (re.compile(r"cfg([0-9a-f]{12})\.xml"), (Vendor.GRANDSTREAM,), FileKind.MAIN),
)

#: File names the vendors' phones ask for that name no phone (common files, firmware
#: lists, a binary Grandstream `cfg<mac>`): not served, not a miss.
_COMMON = re.compile(r"(y0{10}[0-9a-f]{2}\.cfg|0{12}\.cfg|0{12}-phone\.cfg|cfg\.xml"
                     r"|cfg[0-9a-f]{12}|snom[a-z0-9]{1,16}\.htm|[a-z0-9_.-]{1,64}\.(ld|rom|bin))")

#: The Organizationally Unique Identifiers (first 3 bytes of the MAC) of each vendor's
#: phones, from the IEEE registry: enrolment accepts only these.
OUI: dict[Vendor, tuple[str, ...]] = {
    Vendor.YEALINK: ("001565", "805ec0", "805e0c", "249ad8", "44dbd2"),
    Vendor.SNOM: ("000413",),
    Vendor.GRANDSTREAM: ("000b82", "c074ad", "ec74d7"),
    Vendor.POLYCOM: ("0004f2", "64167f"),
}


def parse_file_name(name: str) -> FileRequest | None:
    """The phone a file name names (MAC lower-cased); None for any other name."""
    lowered = name.lower()
    for regex, vendors, kind in _PATTERNS:
        found = regex.fullmatch(lowered)
        if found:
            return FileRequest(found.group(1), vendors, kind)
    return None


def is_common_file(name: str) -> bool:
    return _COMMON.fullmatch(name.lower()) is not None


def vendor_by_oui(mac: str) -> Vendor | None:
    """The vendor whose OUI starts this MAC (None: not a phone vendor we know)."""
    for vendor, prefixes in OUI.items():
        if mac[:6] in prefixes:
            return vendor
    return None


def file_name(vendor: Vendor, mac: str, kind: FileKind = FileKind.MAIN) -> str:
    """A device's file name as the server serves it (the canonical one per vendor)."""
    if vendor is Vendor.GRANDSTREAM:
        return f"cfg{mac}.xml"
    if vendor is Vendor.SNOM:
        return f"{mac}.xml"
    if vendor is Vendor.POLYCOM and kind is FileKind.PHONE:
        return f"{mac}-phone.cfg"
    return f"{mac}.cfg"
