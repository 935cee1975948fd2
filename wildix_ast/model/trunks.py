"""WMS Trunks: SIP trunks to providers, and trunk groups (WMS 'Faisceaux').

A trunk authenticates by registration (the provider gave a username and a secret; Asterisk
registers and answers the provider's digest challenges) or by IP address (the provider sends
from known addresses: PJSIP `identify`, and nothing else is accepted as that trunk). A trunk
group tries its trunks in order and moves to the next one when a trunk is congested, out of
reach or answers 5xx.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from enum import StrEnum
from ipaddress import IPv4Address
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, model_validator

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import FreeText, Host, Identifier, PhoneNumber, Port, pattern
from wildix_ast.model.system import Codec

SipUser = Annotated[str, pattern(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}",
                                  "SIP user name (letters, digits, '.', '_', '+', '-')")]
# A provider's secret is given, not generated: any printable text but what would end or
# escape a pjsip.conf value (';' starts a comment, '[' a section; no spaces at either end).
TrunkSecret = Annotated[str, Field(min_length=4, max_length=128), pattern(
    r"[!-:<-Z\\^-~](?:[ !-:<-Z\\^-~]*[!-:<-Z\\^-~])?", "trunk secret (printable, no ';', "
    "'[' or ']', no spaces at either end)")]


DidRange = Annotated[str, pattern(
    r"\+[0-9]{3,20}(?:-[0-9]{1,20})?",
    "DID or DID range in E.164 ('+33140000000', or '+33140000100-199': the last digits "
    "of the range's end)")]
"""A DID or a range of DIDs the trunk carries, in E.164."""


def did_bounds(value: str) -> tuple[int, int, int]:
    """(first, last, digits) of a DID range: '+33140000100-199' -> the numbers
    33140000100 to 33140000199, 11 digits each."""
    first, _, tail = value[1:].partition("-")
    last = first[:len(first) - len(tail)] + tail if tail else first
    return int(first), int(last), len(first)


class TrunkAuth(StrEnum):
    REGISTRATION = "registration"
    IP = "ip"


class CallerIdMode(StrEnum):
    """What the provider is told the caller is."""

    OFFICE_DID = "office_did"
    """The calling user's office DID, else the trunk's main number."""
    MAIN_NUMBER = "main_number"
    ANONYMOUS = "anonymous"


class CallerName(StrEnum):
    """The caller's name the provider is told (the From display name)."""

    NONE = "none"
    TRUNK = "trunk"
    """The trunk's name: the company, as the administrator named the line."""
    USER = "user"
    """The calling user's own name, as their phone shows it."""


class TrunkFax(StrEnum):
    """How fax calls cross the trunk (docs/fax.md, "Transport")."""

    NONE = "none"
    """No fax treatment: T.38 is refused, calls take the trunk's codecs as they are."""
    G711 = "g711"
    """Fax as audio (T.30 tones in G.711): T.38 refused; the trunk must prefer G.711."""
    T38 = "t38"
    """T.38 over UDPTL offered and accepted; G.711 stays the fallback, so preferred too."""


class T38ErrorCorrection(StrEnum):
    """UDPTL error correction on a T.38 trunk (PJSIP `t38_udptl_ec`)."""

    REDUNDANCY = "redundancy"
    """Each datagram repeats the previous ones: what carriers and most ATAs speak."""
    FEC = "fec"
    """Parity over a span of datagrams (udptl.conf's entries and span)."""
    NONE = "none"


#: Codecs that carry fax tones: anything else (opus, g722, gsm...) mangles them.
FAX_CODECS = ("alaw", "ulaw")


class NumberFormat(StrEnum):
    """How the trunk wants numbers (called and calling)."""

    E164 = "e164"
    NATIONAL = "national"


_SUFFIXES = ("-auth", "-reg", "-identify")


def _no_object_suffix(value: str) -> str:
    # A trunk's auth, registration and identify are named `trunk-<name>-auth` etc.: a trunk
    # named `x-auth` would collide with trunk `x`'s auth object.
    if value.endswith(_SUFFIXES):
        raise ValueError(f"a trunk name may not end with {', '.join(_SUFFIXES)}")
    return value


class Trunk(BaseModel):
    """One SIP trunk."""

    model_config = STRICT

    name: Annotated[Identifier, AfterValidator(_no_object_suffix)]
    description: FreeText | None = None
    auth: TrunkAuth
    host: Host
    port: Port = 5060
    registrar: Host | None = None
    """Registration trunks: where to register, when not `host`."""
    outbound_proxy: Host | None = None
    """A proxy every request to the provider goes through (loose routing)."""
    username: SipUser | None = None
    secret: TrunkSecret | None = Field(default=None, repr=False)
    addresses: list[IPv4Address] = Field(default_factory=empty_list)
    """The provider's addresses, the only ones its calls are taken from. IP trunks: default
    `host`, when it is an address. Registration trunks (their calls are recognised by the
    `line` token of the registration, and must also come from here): default what `host`,
    `registrar` and `outbound_proxy` resolve to when the site is rendered (apply), never on
    the call path."""
    caller_id: CallerIdMode = CallerIdMode.OFFICE_DID
    main_number: PhoneNumber | None = None
    caller_name: CallerName | None = None
    """Left out: none on a trunk that shows the main number or hides the caller (a
    person's name has no business next to the company's number), the user's otherwise."""
    number_format: NumberFormat = NumberFormat.E164
    codecs: list[Codec] = Field(default_factory=lambda: [Codec.ALAW, Codec.ULAW],
                                min_length=1)
    max_calls: Annotated[int, Field(ge=1, le=10000)] | None = None
    dids: list[DidRange] = Field(default_factory=empty_list)
    """The DIDs the provider sends calls to (none: any number); a call to another number
    is refused (404)."""
    procedure: Identifier | None = None
    """The dialplan procedure incoming calls enter (a user's office DID rings the user
    first); none: only office DIDs are answered."""
    fax: TrunkFax = TrunkFax.NONE
    """`g711` or `t38`: the trunk carries faxes (its codecs must then start with alaw or
    ulaw: a fax DID's call must be answered in G.711)."""
    t38_error_correction: T38ErrorCorrection = T38ErrorCorrection.REDUNDANCY
    t38_max_datagram: Annotated[int, Field(ge=100, le=1400)] = 400
    """The largest UDPTL datagram (bytes) announced to the provider (`T38FaxMaxDatagram`)."""
    qualify_frequency: Annotated[int, Field(ge=0, le=3600)] = 30
    """Seconds between OPTIONS to the provider (0: never): a provider that stops answering
    is marked unavailable and skipped at once by its trunk groups."""
    setup_timeout: Annotated[int, Field(ge=1, le=60)] = 4
    """Seconds the provider has to show progress (ringing, early sound_files) before the next
    trunk is tried: an attempt on a provider that swallows INVITEs is bounded. Not applied
    to the last trunk of a group, which has nothing to pass the call to."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for did in self.dids:
            first, last, _ = did_bounds(did)
            if last < first or len(did.partition("-")[2]) > len(str(first)):
                raise ValueError(f"DID range {did} ends before it starts")
        if self.auth is TrunkAuth.REGISTRATION:
            if self.username is None or self.secret is None:
                raise ValueError("a registration trunk needs username and secret")
        elif self.registrar is not None:
            raise ValueError("registrar is for registration trunks")
        if self.auth is TrunkAuth.IP:
            if self.secret is not None:
                raise ValueError("an IP trunk has no secret (the provider is known by its "
                                 "address)")
            if not self.identify_addresses:
                raise ValueError("an IP trunk needs addresses (or host as an IPv4 address)")
        if self.fax is not TrunkFax.NONE and str(self.codecs[0]) not in FAX_CODECS:
            raise ValueError(f"a fax trunk (fax: {self.fax}) must list alaw or ulaw first in "
                             "codecs: fax tones do not survive other codecs")
        if self.caller_id is CallerIdMode.MAIN_NUMBER and self.main_number is None:
            raise ValueError("caller_id main_number needs main_number")
        if self.main_number is not None and not self.main_number.startswith("+"):
            raise ValueError("main_number is written in E.164 ('+' and the country code)")
        return self

    @property
    def effective_caller_name(self) -> CallerName:
        if self.caller_name is not None:
            return self.caller_name
        return CallerName.USER if self.caller_id is CallerIdMode.OFFICE_DID else CallerName.NONE

    @property
    def identify_addresses(self) -> list[str]:
        if self.addresses:
            return [str(a) for a in self.addresses]
        try:
            return [str(IPv4Address(self.host))]
        except ValueError:
            return []


class TrunkGroup(BaseModel):
    """Trunks tried in order (WMS 'Faisceau')."""

    model_config = STRICT

    name: Identifier
    trunks: list[Identifier] = Field(min_length=1)


Resolver = Callable[[str], list[str]]


def resolve_ipv4(host: str) -> list[str]:
    """The IPv4 addresses `host` names (itself when it is one): a system resolver lookup."""
    try:
        return [str(IPv4Address(host))]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    return sorted({str(info[4][0]) for info in found})


def with_provider_addresses(trunks: list[Trunk], resolve: Resolver = resolve_ipv4,
                            ) -> list[Trunk]:
    """Registration trunks without `addresses` get what their host, registrar and outbound
    proxy resolve to now (render/apply time: the dialplan then compares addresses only).
    A name that does not resolve is a located error: give the addresses."""
    out: list[Trunk] = []
    problems: list[Problem] = []
    for index, trunk in enumerate(trunks):
        if trunk.auth is not TrunkAuth.REGISTRATION or trunk.addresses:
            out.append(trunk)
            continue
        found: list[str] = []
        for field, host in (("host", trunk.host), ("registrar", trunk.registrar),
                            ("outbound_proxy", trunk.outbound_proxy)):
            if host is None:
                continue
            try:
                found += resolve(host)
            except (OSError, UnicodeError) as e:
                problems.append(Problem(f"trunks[{index}].{field}", f"{host} does not "
                                        f"resolve ({e}); give trunks[{index}].addresses"))
        out.append(trunk.model_copy(update={
            "addresses": [IPv4Address(a) for a in dict.fromkeys(found)]}))
    if problems:
        raise SettingsError("the providers' addresses cannot be found", problems)
    return out
