"""One phone's configuration file, rendered from the vendor's template: a pure function of
the site's provisioning settings, the device, its user and that user's SIP password
(`render_configuration`), and the same read from a store (`render_device_configuration`,
for the server and for the handset's login code).

Python builds every value (already in the vendor's units: seconds, P-values, transport
codes); `templates/provisioning/<vendor>.j2` only lays them out. An engineer overrides a
template by putting a file of the same name in a folder passed as `templates` (like
`templates/asterisk/`). XML templates are autoescaped; every value is re-checked here for
control characters, so no value can add a line or a setting to a `key = value` file."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from wildix_ast.errors import RenderError
from wildix_ast.model.devices import Device, Vendor
from wildix_ast.model.provisioning import ProvisioningSettings, SipTransport
from wildix_ast.services.provisioning.files import FileKind, file_name
from wildix_ast.templates import builtin_folder, checked_folders

if TYPE_CHECKING:
    from wildix_ast.model.site import Site
    from wildix_ast.model.users import User
    from wildix_ast.store.store import Store

TEMPLATES_ENV = "WILDIX_AST_PROVISIONING_TEMPLATES"

#: vendor, file -> (template, content type)
TEMPLATES: dict[tuple[Vendor, FileKind], tuple[str, str]] = {
    (Vendor.YEALINK, FileKind.MAIN): ("yealink.cfg.j2", "text/plain; charset=utf-8"),
    (Vendor.SNOM, FileKind.MAIN): ("snom.xml.j2", "application/xml"),
    (Vendor.GRANDSTREAM, FileKind.MAIN): ("grandstream.xml.j2", "application/xml"),
    (Vendor.POLYCOM, FileKind.MAIN): ("polycom-master.xml.j2", "application/xml"),
    (Vendor.POLYCOM, FileKind.PHONE): ("polycom-phone.xml.j2", "application/xml"),
}

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True)
class RenderedFile:
    filename: str
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Line:
    """The SIP account a phone's line registers with."""

    index: int
    extension: str
    auth_user: str
    password: str
    display_name: str
    server: str
    port: int
    transport: SipTransport


@dataclass(frozen=True)
class SiteFacts:
    """What a phone's file needs of the site (read once per store revision)."""

    provisioning: ProvisioningSettings
    sip_port: int
    tls_port: int
    timezone: str

    @classmethod
    def of(cls, site: Site) -> SiteFacts:
        sip = site.system.sip_rtp
        return cls(site.provisioning, sip.sip_port, sip.tls_port,
                   site.system.language_region.timezone)


def builtin_templates_dir() -> Path:
    """$WILDIX_AST_PROVISIONING_TEMPLATES, else the checkout's or the wheel's
    `templates/provisioning`."""
    return builtin_folder(TEMPLATES_ENV, "provisioning")


@functools.lru_cache(maxsize=8)
def _environment(override: str | None, builtin: str) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        loaders.append(jinja2.FileSystemLoader(override))
    loaders.append(jinja2.FileSystemLoader(builtin))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["xml.j2"], default=False,
                                            default_for_string=False),
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def environment(templates: Path | None = None) -> jinja2.Environment:
    return _environment(*checked_folders(templates, builtin_templates_dir(), TEMPLATES_ENV,
                                         "provisioning template"))


@functools.lru_cache(maxsize=64)
def utc_offset_seconds(timezone: str) -> int:
    """The zone's standard offset from UTC (the smaller of January's and July's)."""
    zone = zoneinfo.ZoneInfo(timezone)
    offsets = [dt.datetime(2026, month, 1, 12, tzinfo=zone).utcoffset() or dt.timedelta()
               for month in (1, 7)]
    return int(min(offsets).total_seconds())


@functools.lru_cache(maxsize=64)
def posix_timezone(timezone: str) -> str:
    """The zone's POSIX TZ rule (`CET-1CEST,M3.5.0,M10.5.0/3`), read from the footer of its
    TZif file (the rule for times after the table); `UTC0` if there is none."""
    for folder in zoneinfo.TZPATH:
        path = Path(folder) / timezone
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if data.startswith(b"TZif"):
            footer = data.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("ascii", "replace")
            if footer and not _UNSAFE.search(footer) and len(footer) < 80:
                return footer
    return "UTC0"


def _offset_hours(seconds: int) -> str:
    """Yealink's `local_time.time_zone`: `+1`, `-5`, `+5:30`."""
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours}" + (f":{rest // 60:02d}" if rest else "")


def line_of(facts: SiteFacts, user: User, password: str, index: int) -> Line:
    settings = facts.provisioning
    server = settings.sip_server or settings.address or ""
    port = facts.tls_port if settings.sip_transport is SipTransport.TLS else facts.sip_port
    return Line(index=index, extension=user.extension, auth_user=user.extension,
                password=password, display_name=user.name, server=server, port=port,
                transport=settings.sip_transport)


def _checked(values: dict[str, object]) -> None:
    """No value may carry a line break or control character into a file (they were
    admitted by the model's types; this re-checks where they are used)."""
    for name, value in values.items():
        if isinstance(value, str) and _UNSAFE.search(value):
            raise RenderError(f"provisioning value {name} holds a control character")


def render_configuration(facts: SiteFacts, device: Device, line: Line | None,
                         provisioning_url: str | None, kind: FileKind = FileKind.MAIN,
                         templates: Path | None = None) -> RenderedFile:
    """The file `kind` of `device`: with `line` (None: an unassigned phone, network
    settings only, no secret) and, when given, the link the phone keeps fetching from."""
    try:
        template, content_type = TEMPLATES[device.vendor, kind]
    except KeyError:
        raise RenderError(f"{device.vendor.value} phones have no {kind.value} file") from None
    settings = facts.provisioning
    offset = utc_offset_seconds(facts.timezone)
    context: dict[str, object] = {
        "mac": device.mac,
        "line": line,
        "settings": settings,
        "provisioning_url": provisioning_url,
        "provisioning_host_path": provisioning_url.split("://", 1)[-1]
        if provisioning_url else None,
        "https": bool(provisioning_url and provisioning_url.startswith("https:")),
        "timezone": facts.timezone,
        "utc_offset": offset,
        "utc_offset_hours": _offset_hours(offset),
        "posix_timezone": posix_timezone(facts.timezone),
        "dns_primary": str(settings.dns_primary) if settings.dns_primary else None,
        "dns_secondary": str(settings.dns_secondary) if settings.dns_secondary else None,
        "dns_primary_octets": str(settings.dns_primary).split(".")
        if settings.dns_primary else None,
        "phone_file": file_name(device.vendor, device.mac, FileKind.PHONE),
        "yealink_transport": {"udp": 0, "tcp": 1, "tls": 2}[settings.sip_transport.value],
        "grandstream_transport": {"udp": 0, "tcp": 1, "tls": 2}[settings.sip_transport.value],
        "polycom_transport": {"udp": "UDPOnly", "tcp": "TCPOnly",
                              "tls": "TLS"}[settings.sip_transport.value],
    }
    _checked({k: v for k, v in context.items() if isinstance(v, str)})
    if line is not None:
        _checked({"line." + k: v for k, v in vars(line).items()})
    try:
        body = environment(templates).get_template(template).render(context)
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"provisioning template {template} not found") from error
    except jinja2.TemplateError as error:
        raise RenderError(f"provisioning template {template} failed: {error}") from error
    return RenderedFile(file_name(device.vendor, device.mac, kind), content_type,
                        body.encode("utf-8"))


def sip_password_of(store: Store, user: User) -> str | None:
    """The user's SIP password: the settings file's, else the generated one in the vault."""
    from wildix_ast.store.vault import user_secret_key

    return user.sip_password or store.get_secret(user_secret_key(user.extension, "sip"))


def render_device_configuration(store: Store, device: Device, *,
                                provisioning_url: str | None = None,
                                kind: FileKind = FileKind.MAIN,
                                templates: Path | None = None,
                                facts: SiteFacts | None = None) -> RenderedFile:
    """`device`'s file as the store says now (its user's line if assigned): (file name,
    content type, bytes). For the server and for the handset's login code; `facts` saves
    reading the site when the caller keeps it."""
    if facts is None:
        facts = SiteFacts.of(store.export_site())
    line = None
    if device.extension is not None:
        user = store.user_by_extension(device.extension)
        if user is not None and user.type.has_phone:
            password = sip_password_of(store, user)
            if password is not None:
                line = line_of(facts, user, password, device.line)
    else:
        line = hot_desk_line(store, facts, device)
    return render_configuration(facts, device, line, provisioning_url, kind, templates)


def hot_desk_line(store: Store, facts: SiteFacts, device: Device) -> Line | None:
    """An unassigned phone's line: its own hot-desk endpoint `hd-<mac>` (the login code and
    emergency numbers only: docs/devices.md); None until an apply made its password."""
    from wildix_ast.asterisk.pjsip import HOT_DESK_CALLER
    from wildix_ast.calls.handset_login import hot_desk_endpoint
    from wildix_ast.store.handset import hot_desk_key

    password = store.get_secret(hot_desk_key(device.mac))
    if password is None:
        return None
    settings = facts.provisioning
    port = facts.tls_port if settings.sip_transport is SipTransport.TLS else facts.sip_port
    name = hot_desk_endpoint(device.mac)
    return Line(index=1, extension=name, auth_user=name, password=password,
                display_name=HOT_DESK_CALLER, server=settings.sip_server or settings.address
                or "", port=port, transport=settings.sip_transport)
