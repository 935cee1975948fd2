"""WMS Settings -> PBX / System: PBX name, language & region, SIP-RTP, manager access."""

from __future__ import annotations

import functools
import zoneinfo
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, model_validator

from wildix_ast.fields import CountryCode, Identifier, Language, Port, ToneZone, Width
from wildix_ast.model import STRICT


class Codec(StrEnum):
    """Codec names as Asterisk's `allow=` knows them."""

    ULAW = "ulaw"
    ALAW = "alaw"
    G722 = "g722"
    G729 = "g729"
    OPUS = "opus"
    GSM = "gsm"
    ILBC = "ilbc"
    G726 = "g726"
    SPEEX = "speex"


@functools.cache
def _timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on every call (milliseconds each)
    return frozenset(zoneinfo.available_timezones())


def _known_timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError(f"{value!r} is not a known time zone (like 'Europe/Paris')")
    return value


Timezone = Annotated[str, Width(64), AfterValidator(_known_timezone)]

# The zones templates/asterisk/indications.conf.j2 defines (ISO country codes; Asterisk's
# sample calls the United Kingdom "uk").
SUPPORTED_TONE_ZONES = ("at", "be", "ch", "de", "dk", "es", "fr", "gb", "it", "nl", "pl", "pt",
                        "us")


def _supported_tone_zone(value: str) -> str:
    if value not in SUPPORTED_TONE_ZONES:
        raise ValueError(f"tone zone {value!r} is not supported (one of "
                         f"{', '.join(SUPPORTED_TONE_ZONES)})")
    return value


def _not_reserved_section(value: str) -> str:
    # manager.conf's [general] section: an account of that name would merge into it.
    if value.lower() == "general":
        raise ValueError(f"{value!r} is reserved by Asterisk's manager.conf")
    return value


class LanguageRegion(BaseModel):
    """PBX -> Language & region."""

    model_config = STRICT

    language: Language = "en"
    tone_zone: Annotated[ToneZone, AfterValidator(_supported_tone_zone)] = "us"
    country_code: CountryCode = "1"
    timezone: Timezone = "UTC"


class SipRtp(BaseModel):
    """PBX -> SIP-RTP: where Asterisk listens and which codecs it offers where."""

    model_config = STRICT

    bind_address: IPv4Address = IPv4Address("0.0.0.0")
    sip_port: Port = 5060
    rtp_start: Port = 10000
    rtp_end: Port = 20000
    external_address: IPv4Address | None = None
    lan_networks: list[IPv4Network] = Field(default_factory=lambda: [
        IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16")])
    lan_codecs: list[Codec] = Field(default_factory=lambda: [Codec.ALAW, Codec.ULAW, Codec.G722],
                                    min_length=1)
    remote_codecs: list[Codec] = Field(default_factory=lambda: [Codec.G729, Codec.ALAW,
                                                                Codec.ULAW], min_length=1)

    @model_validator(mode="after")
    def _rtp_range(self) -> Self:
        if self.rtp_end <= self.rtp_start:
            raise ValueError(f"rtp_end ({self.rtp_end}) must be above rtp_start "
                             f"({self.rtp_start})")
        if self.rtp_start <= self.sip_port <= self.rtp_end:
            raise ValueError(f"sip_port {self.sip_port} lies inside the RTP range")
        return self


class Manager(BaseModel):
    """The Asterisk Manager Interface account wildix-ast uses. Always on loopback; its secret
    is generated and kept in the store, never written in the settings file."""

    model_config = STRICT

    port: Port = 5038
    username: Annotated[Identifier, AfterValidator(_not_reserved_section)] = "wildix-ast"


class System(BaseModel):
    """The `system` section of the settings file."""

    model_config = STRICT

    pbx_name: Identifier = "wildix-ast"
    language_region: LanguageRegion = Field(default_factory=LanguageRegion)
    sip_rtp: SipRtp = Field(default_factory=SipRtp)
    manager: Manager = Field(default_factory=Manager)
