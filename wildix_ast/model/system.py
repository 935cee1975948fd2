"""WMS Settings -> PBX / System: PBX name, language & region, SIP-RTP, manager access."""

from __future__ import annotations

import functools
import os
import re
import zoneinfo
from contextlib import suppress
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from wildix_ast.model.common import STRICT, Srtp
from wildix_ast.model.fields import (
    CountryCode,
    Identifier,
    Language,
    Port,
    SipToken,
    ToneZone,
    Width,
)


class Codec(StrEnum):
    """Codec names as Asterisk's `allow=` knows them."""

    ULAW = "ulaw"
    ALAW = "alaw"
    G722 = "g722"
    OPUS = "opus"
    GSM = "gsm"
    G726 = "g726"
    SPEEX = "speex"


@functools.cache
def _timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on every call (milliseconds each)
    return frozenset(zoneinfo.available_timezones())


_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


def _listed_zone(value: str) -> bool:
    """True only if `zoneinfo.available_timezones()` lists `value`, found by opening its one
    file instead of walking the whole database (a twentieth of a second, every render).
    The walk's rules: a key is a file's path under a TZPATH folder, reached through real
    folders (the walk does not enter linked ones), not under the top `right` or `posix`,
    not `posixrules`, and the file starts with `TZif`. False: ask the full list."""
    if not _ZONE_KEY.fullmatch(value) or value == "posixrules":
        return False
    *folders, _name = value.split("/")
    if folders and folders[0] in ("right", "posix"):
        return False
    for root in zoneinfo.TZPATH:
        folder = root
        for part in folders:
            folder = os.path.join(folder, part)
            if os.path.islink(folder) or not os.path.isdir(folder) \
                    or not os.access(folder, os.R_OK | os.X_OK):
                break
        else:
            path = os.path.join(root, value)
            if os.path.isdir(path):
                continue
            with suppress(OSError), open(path, "rb") as file:
                if file.read(4) == b"TZif":
                    return True
    return False


def _known_timezone(value: str) -> str:
    if not _listed_zone(value) and value not in _timezones():
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


# Codecs Debian's Asterisk 22 can only pass through: it has no translator for them
# (`core show translation`), so a call between a phone that speaks only one of them and any
# other phone fails ("No path to translate"). They are not `Codec`s: never offered.
NOT_CARRIED = ("g729", "ilbc")

#: RTP ports one call through Asterisk holds: two legs, each an RTP and an RTCP port.
RTP_PORTS_PER_CALL = 4


def _carried(value: object) -> object:
    if isinstance(value, str) and value.lower() in NOT_CARRIED:
        raise ValueError(f"{value} cannot be carried: Asterisk has no translator for it, a "
                         "call to a phone that speaks only it would fail; remove it (one of "
                         f"{', '.join(c.value for c in Codec)})")
    return value


CarriedCodecs = Annotated[list[Annotated[Codec, BeforeValidator(_carried)]], Field(min_length=1)]

#: An absolute file path as the Asterisk host sees it (certificates).
FilePath = Annotated[str, Width(255), Field(max_length=255),
                     StringConstraints(pattern=r"/[A-Za-z0-9._/-]+")]


class SipRtp(BaseModel):
    """PBX -> SIP-RTP: where Asterisk listens, which codecs it offers, how long silent or
    vanished phones keep a call, and the TLS transport for remote phones."""

    model_config = STRICT

    bind_address: IPv4Address = IPv4Address("0.0.0.0")
    sip_port: Port = 5060
    rtp_start: Port = 10000
    rtp_end: Port = 20000
    external_address: IPv4Address | None = None
    #: The address RTP binds to and announces (the host's LAN address). Left out: the
    #: bind address when it is not 0.0.0.0; else the wildcard, and then Asterisk resolves
    #: the host name on every call (keep it in /etc/hosts).
    media_address: IPv4Address | None = None
    lan_networks: list[IPv4Network] = Field(default_factory=lambda: [
        IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16")])
    lan_codecs: CarriedCodecs = Field(default_factory=lambda: [Codec.ALAW, Codec.ULAW,
                                                               Codec.G722])
    remote_codecs: CarriedCodecs = Field(default_factory=lambda: [Codec.OPUS, Codec.ALAW,
                                                                  Codec.ULAW])
    #: Calls the site must carry at once: the RTP range must hold 4 ports for each.
    concurrent_calls: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: Seconds without RTP before Asterisk hangs a call up (0: never), and on hold.
    rtp_timeout: Annotated[int, Field(ge=0, le=3600)] = 60
    rtp_hold_timeout: Annotated[int, Field(ge=0, le=86400)] = 600
    #: SIP session timer (RFC 4028): a call whose far end stops refreshing ends.
    session_expires: Annotated[int, Field(ge=90, le=86400)] = 1800
    #: Seconds between OPTIONS to each registered phone (0: off): presence and NAT pinholes.
    qualify_frequency: Annotated[int, Field(ge=0, le=3600)] = 60
    #: The SIP `User-Agent`/`Server` header: neutral by default, since the product's or the
    #: site's name tells a scanner what it found and whose it is.
    user_agent: SipToken = "PBX"
    #: TLS transport (remote phones; SRTP is then offered to phones that ask for it).
    tls_port: Port = 5061
    tls_certificate: FilePath | None = None
    tls_private_key: FilePath | None = None
    #: SDES-SRTP (each ACL group may override it). Phones with SRTP (optional or required)
    #: are TLS phones: they may be anywhere and use TLS only; phones without are LAN phones
    #: (from lan_networks only, once TLS is on). Without TLS there is none: the keys would
    #: travel in clear.
    srtp: Srtp = Srtp.OFF

    @model_validator(mode="after")
    def _rtp_range(self) -> Self:
        if self.rtp_end <= self.rtp_start:
            raise ValueError(f"rtp_end ({self.rtp_end}) must be above rtp_start "
                             f"({self.rtp_start})")
        if self.rtp_start <= self.sip_port <= self.rtp_end:
            raise ValueError(f"sip_port {self.sip_port} lies inside the RTP range")
        ports = self.rtp_end - self.rtp_start + 1
        if self.concurrent_calls is not None and \
                ports < self.concurrent_calls * RTP_PORTS_PER_CALL:
            raise ValueError(
                f"the RTP range {self.rtp_start}-{self.rtp_end} holds {ports} ports, "
                f"{self.concurrent_calls} concurrent calls need "
                f"{self.concurrent_calls * RTP_PORTS_PER_CALL} ({RTP_PORTS_PER_CALL} a call)")
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("tls_certificate and tls_private_key go together")
        if self.tls_certificate is not None and \
                (self.tls_port == self.sip_port or self.rtp_start <= self.tls_port <= self.rtp_end):
            raise ValueError(f"tls_port {self.tls_port} collides with the SIP port or the RTP "
                             "range")
        if self.tls_certificate is not None and self.external_address is None:
            # phones outside lan_networks (what TLS is for) would be given the host's
            # private address in the SDP and the Contact: one-way or no audio
            raise ValueError("external_address is required with TLS (remote phones): the "
                             "public address Asterisk announces to phones outside "
                             "lan_networks")
        if self.srtp is Srtp.REQUIRED and self.tls_certificate is None:
            raise ValueError("srtp: required needs TLS (tls_certificate and tls_private_key):"
                             " SDES keys are never sent over UDP or TCP")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None

    @property
    def rtp_address(self) -> IPv4Address | None:
        """Where RTP binds: the sound_files address, else a concrete bind address, else None."""
        if self.media_address is not None:
            return self.media_address
        return None if self.bind_address.is_unspecified else self.bind_address


class Manager(BaseModel):
    """The Asterisk Manager Interface account wildix-ast uses. Always on loopback; its secret
    is generated and kept in the store, never written in the settings file."""

    model_config = STRICT

    port: Port = 5038
    username: Annotated[Identifier, AfterValidator(_not_reserved_section)] = "wildix-ast"


class FastAgi(BaseModel):
    """Where Asterisk reaches the FastAGI service (`wildix-ast agi serve`) for call-time
    decisions (users' preferences). When it does not answer, calls take the dialplan's own
    path: users are rung directly."""

    model_config = STRICT

    host: IPv4Address = IPv4Address("127.0.0.1")
    port: Port = 4573

    @field_validator("host")
    @classmethod
    def _on_this_host(cls, host: IPv4Address) -> IPv4Address:
        # FastAGI is plain TCP and its key travels in every request: off this host, anyone
        # on the path would read it (and the service binds to loopback only)
        if not host.is_loopback:
            raise ValueError(f"{host} is not a loopback address: the FastAGI service runs "
                             "on the PBX itself (FastAGI is plain TCP, its key would travel "
                             "in clear)")
        return host


class RealtimeMode(StrEnum):
    """Where Asterisk reads the users' SIP objects (endpoint, auth, AOR) and mailboxes."""

    FILE = "file"  # pjsip.conf and voicemail.conf: a change reloads those modules
    REALTIME = "realtime"  # database tables: a change is one row, no module reload


class RealtimeEngine(StrEnum):
    SQLITE = "sqlite"  # a file of its own beside the configuration, never the store
    POSTGRESQL = "postgresql"  # a database several Asterisk nodes can read


class Node(BaseModel):
    """One Asterisk node of a site whose nodes read the same PostgreSQL realtime tables
    (issue 22, docs/scaling.md): where the other nodes send it calls (its SIP address);
    its ports tell which node a rendered configuration is for (`names.local_node`). No
    node reaches another's AMI: changes reach each node through the store's expiry log
    and the node's own follower."""

    model_config = STRICT

    name: Identifier
    address: IPv4Address
    ami_port: Port = 5038
    sip_port: Port = 5060


class Realtime(BaseModel):
    """`system.realtime` (issue 22): file mode (the default) or realtime tables. With
    PostgreSQL, `host`, `port`, `database` and `username` are the account Asterisk reads
    with (SELECT on the four realtime tables only); its password is generated and kept in
    the store's vault, never written in the settings file. `nodes`: every Asterisk node
    reading those tables (PostgreSQL only); apply expires a changed object on each."""

    model_config = STRICT

    mode: RealtimeMode = RealtimeMode.FILE
    engine: RealtimeEngine = RealtimeEngine.SQLITE
    host: IPv4Address = IPv4Address("127.0.0.1")
    port: Port = 5432
    database: Identifier = "asterisk"
    username: Identifier = "asterisk"
    nodes: list[Node] = Field(default_factory=list, max_length=32)

    @property
    def enabled(self) -> bool:
        return self.mode == RealtimeMode.REALTIME

    @model_validator(mode="after")
    def _nodes_share_postgresql(self) -> Self:
        if self.nodes and not (self.enabled and self.engine == RealtimeEngine.POSTGRESQL):
            raise ValueError("realtime.nodes needs mode: realtime with engine: postgresql "
                             "(the nodes read the same tables)")
        names = [n.name for n in self.nodes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"realtime.nodes: {', '.join(twice)} named twice")
        places = [(n.address, n.ami_port) for n in self.nodes]
        if len(set(places)) != len(places):
            raise ValueError("realtime.nodes: two nodes with one AMI address and port")
        return self


class System(BaseModel):
    """The `system` section of the settings file."""

    model_config = STRICT

    pbx_name: Identifier = "wildix-ast"
    language_region: LanguageRegion = Field(default_factory=LanguageRegion)
    sip_rtp: SipRtp = Field(default_factory=SipRtp)
    manager: Manager = Field(default_factory=Manager)
    fastagi: FastAgi = Field(default_factory=FastAgi)
    # Left out of serialisation while it is the default: the digests the store keeps of
    # sites written before issue 22 stay equal, so a re-import of the same site after
    # migration 0013 changes nothing (Realtime() is the file mode those sites had).
    realtime: Realtime = Field(default_factory=Realtime,
                               exclude_if=lambda value: value == Realtime())
