"""The company directory over LDAP, through ldap3: a checked TLS connection (LDAPS or
StartTLS, the certificate verified against the CA file and the server's name), paged
searches, and range retrieval of large groups' `member` values (Active Directory hands out
at most 1,500 values per read and names the rest `member;range=1500-*`).

Every failure (no server answers, the certificate is not trusted, the bind is refused, the
base DN does not exist) becomes a DirectoryError saying which and where."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wildix_ast.errors import DirectoryError
from wildix_ast.model.directory import DirectorySecurity, DirectorySettings


@dataclass(frozen=True)
class Entry:
    """One directory entry: its DN and its attributes (lists of text values)."""

    dn: str
    attributes: Mapping[str, list[str]]

    def first(self, name: str) -> str | None:
        for key, values in self.attributes.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None


def _texts(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in values if v is not None and v != ""]


_RANGE = re.compile(r"^(?P<name>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)


def ranged_values(attributes: Mapping[str, Any], name: str,
                  fetch: Callable[[str], Mapping[str, Any]]) -> list[str]:
    """Every value of attribute `name`, following range retrieval: when the server answers
    `name;range=0-1499` instead of `name`, ask for `name;range=1500-*` (`fetch(attribute)`
    reads the entry again with that one attribute) until a range ends in `*`."""
    values: list[str] = []
    wanted = name.lower()
    current: Mapping[str, Any] = attributes
    for _ in range(100_000):
        ranged = None
        for key, found in current.items():
            if key.lower() == wanted:
                return values + _texts(found)
            match = _RANGE.match(key)
            if match and match["name"].lower() == wanted:
                ranged = (match, found)
        if ranged is None:
            return values
        match, found = ranged
        values += _texts(found)
        if match["high"] == "*":
            return values
        current = fetch(f"{name};range={int(match['high']) + 1}-*")
    raise DirectoryError(f"{name}: the server's ranges never end")


def _server_url(server: str, security: DirectorySecurity) -> tuple[str, int]:
    host, _, port = server.partition(":")
    default = 636 if security is DirectorySecurity.LDAPS else 389
    return host, int(port) if port else default


class DirectoryConnection:
    """A bound connection to the first server of the list that answers."""

    def __init__(self, settings: DirectorySettings, password: str | None) -> None:
        import ldap3
        from ldap3.core import exceptions as ldap_errors

        self.settings = settings
        try:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                            ca_certs_file=settings.ca_file)
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"directory.ca_file {settings.ca_file}: cannot be used "
                                 f"({exc})") from None
        failures: list[str] = []
        self.server_name = ""
        for server in settings.servers:
            host, port = _server_url(server, settings.security)
            use_ssl = settings.security is DirectorySecurity.LDAPS
            where = f"{'ldaps' if use_ssl else 'ldap'}://{host}:{port}"
            target = ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls,
                                  connect_timeout=settings.timeout, get_info=ldap3.NONE)
            connection = ldap3.Connection(
                target, user=settings.bind_dn, password=password if settings.bind_dn else None,
                authentication=ldap3.SIMPLE if settings.bind_dn else ldap3.ANONYMOUS,
                receive_timeout=settings.timeout, raise_exceptions=False, read_only=True,
                # the raw values are what the sync reads: without a schema ldap3's value
                # formatting is a third of a 10,000-entry listing's time, for nothing
                check_names=False, auto_referrals=False)
            try:
                connection.open()
                if settings.security is DirectorySecurity.STARTTLS \
                        and not connection.start_tls():
                    failures.append(f"{where}: StartTLS refused "
                                    f"({connection.result.get('description')})")
                    connection.unbind()
                    continue
                if not connection.bind():
                    description = connection.result.get("description")
                    connection.unbind()
                    if description == "invalidCredentials":
                        raise DirectoryError(
                            f"{where} refused the bind DN {settings.bind_dn!r}: wrong DN or "
                            "password (set it with `wildix-ast directory password`)")
                    raise DirectoryError(f"{where} refused the bind: {description}")
            except ldap_errors.LDAPException as exc:
                failures.append(f"{where}: {_explain(exc, settings)}")
                continue
            self.connection = connection
            self.server_name = server
            return
        raise DirectoryError("no directory server could be used; nothing was changed",
                             _problems(failures))

    def close(self) -> None:
        self.connection.unbind()

    def __enter__(self) -> DirectoryConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, base: str, search_filter: str, attributes: Sequence[str]) -> Iterator[Entry]:
        """Every entry under `base` that `search_filter` matches, read in pages."""
        import ldap3
        from ldap3.core import exceptions as ldap_errors

        try:
            results = self.connection.extend.standard.paged_search(
                base, search_filter, search_scope=ldap3.SUBTREE, attributes=list(attributes),
                paged_size=self.settings.page_size, generator=True)
            for found in results:
                if found.get("type") != "searchResEntry":
                    continue
                yield entry_of(found["dn"], found.get("raw_attributes", {}))
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"searching {base!r} on {self.server_name} failed: "
                                 f"{_explain(exc, self.settings)}") from None
        result = self.connection.result
        if result and result.get("result") not in (0, None):
            raise DirectoryError(f"searching {base!r} with {search_filter} on "
                                 f"{self.server_name} failed: {result.get('description')} "
                                 f"{result.get('message') or ''}".rstrip())

    def read(self, dn: str, attributes: Sequence[str]) -> Mapping[str, Any]:
        """The attributes of one entry (base search), as the server names them."""
        import ldap3
        from ldap3.core import exceptions as ldap_errors

        try:
            self.connection.search(dn, "(objectClass=*)", search_scope=ldap3.BASE,
                                   attributes=list(attributes))
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"reading {dn!r} on {self.server_name} failed: "
                                 f"{_explain(exc, self.settings)}") from None
        if not self.connection.response:
            return {}
        found: Mapping[str, Any] = self.connection.response[0].get("raw_attributes", {})
        return found

    def group_members(self, base: str, group_filter: str) -> tuple[int, set[str]]:
        """The groups `group_filter` finds, and the DNs of their members (lower-cased),
        every range of a large group's `member` included."""
        groups = 0
        members: set[str] = set()
        for group in self.search(base, group_filter, ["member"]):
            groups += 1
            dn = group.dn

            def fetch(attribute: str, dn: str = dn) -> Mapping[str, Any]:
                return self.read(dn, [attribute])

            values = ranged_values(group.attributes, "member", fetch)
            members.update(normal_dn(v) for v in values)
        return groups, members


def entry_of(dn: str, raw: Mapping[str, Any]) -> Entry:
    """An entry from the server's raw values: text, except Active Directory's binary
    objectGUID, written the way AD tools show it (`{xxxxxxxx-...}`, little-endian)."""
    attributes: dict[str, list[str]] = {}
    for name, values in raw.items():
        if name.lower() == "objectguid":
            listed = values if isinstance(values, list) else [values]
            attributes[name] = [guid_text(v) for v in listed if v]
        else:
            attributes[name] = _texts(values)
    return Entry(dn, attributes)


def guid_text(value: bytes | str) -> str:
    """An objectGUID's 16 bytes as `{uuid}` (AD's byte order); a text is kept."""
    if isinstance(value, bytes) and len(value) == 16:
        return "{" + str(uuid.UUID(bytes_le=value)) + "}"
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def normal_dn(dn: str) -> str:
    """A DN compared the way directories do for the usual DNs: without case, and without
    spaces around the separators."""
    return ",".join(part.strip() for part in dn.split(",")).lower()


def _explain(exc: Exception, settings: DirectorySettings) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        trusted = settings.ca_file or "the system's CA certificates"
        return f"its TLS certificate is not trusted ({trusted}) or does not name the server"
    if "timed out" in text.lower():
        return f"no answer within {settings.timeout} s"
    if "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}"


def _problems(failures: list[str]) -> list[Any]:
    from wildix_ast.errors import Problem

    return [Problem(f.split(": ", 1)[0], f.split(": ", 1)[1]) for f in failures]
