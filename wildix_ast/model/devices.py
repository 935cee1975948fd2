"""WMS Devices: a phone known to the PBX by its MAC address, its vendor and model, and the
user (and line) it is assigned to. Devices are inventory, not settings: they live in the
store only (`wildix-ast device ...`), never in the settings file."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Extension, FreeText, Width, pattern


class Vendor(StrEnum):
    """The vendors whose phones the provisioning server will configure."""

    YEALINK = "yealink"
    SNOM = "snom"
    GRANDSTREAM = "grandstream"
    POLYCOM = "polycom"


def _normal_mac(value: object) -> object:
    """'00:15:65:AB:CD:EF', '00-15-65-ab-cd-ef', '0015.65ab.cdef' -> '001565abcdef'."""
    if isinstance(value, str):
        return "".join(c for c in value if c not in ":-.").lower()
    return value


Mac = Annotated[str, BeforeValidator(_normal_mac), Width(12, exact=True), pattern(
    r"[0-9a-f]{12}", "MAC address (12 hexadecimal digits, ':' '-' '.' allowed between)")]


class Device(BaseModel):
    """One phone."""

    model_config = STRICT

    mac: Mac
    vendor: Vendor
    model: FreeText | None = None
    extension: Extension | None = None
    """The user it is assigned to (None: unassigned)."""
    line: int = Field(default=1, ge=1, le=16)
    ip: Annotated[str, Width(45)] | None = None
    firmware: FreeText | None = None
    last_seen: datetime | None = None
