"""WMS Users > Import > LDAP / Active Directory: where the company directory is and how its
entries become users (docs/directory.md).

The bind password is not a setting: it is a secret kept by the store's vault
(`wildix-ast directory password`), never in the settings file nor in an export."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import DEFAULT_GROUP, STRICT, empty_list
from wildix_ast.model.fields import Extension, Identifier, Width, pattern


class DirectoryKind(StrEnum):
    """Which server family: it chooses the default filters and attribute names."""

    OPENLDAP = "openldap"
    ACTIVE_DIRECTORY = "active_directory"


class DirectorySecurity(StrEnum):
    """How the connection is protected. There is no clear-text mode: the bind password
    and every user's personal data would cross the network readable."""

    LDAPS = "ldaps"
    """TLS from the first byte (port 636 by default)."""
    STARTTLS = "starttls"
    """Plain LDAP upgraded with StartTLS before the bind (port 389 by default)."""


DirectoryServer = Annotated[str, Width(261), pattern(
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?",
    "server (a host name or IPv4 address, optionally ':port')")]
"""`host` or `host:port`: no scheme (the security setting says it), no credentials."""

# Printable text without control characters, NUL or line breaks: a DN or a filter goes to
# the LDAP server as one protocol value, never into a shell or an Asterisk file.
# The lengths are `max_length`, not a bounded repetition of the class: the regex engine
# builds `[^...]{1,1024}` as 1,024 copies of a Unicode class (16-60 ms each such type, in
# every process that loads the settings model), `[^...]+` as one.
_LDAP_TEXT = r"[^\x00-\x1f\x7f]+"
DistinguishedName = Annotated[str, Width(1024), Field(max_length=1024), pattern(
    _LDAP_TEXT, "distinguished name (printable text, no line breaks)")]
LdapFilter = Annotated[str, Width(1024), Field(max_length=1024), pattern(
    r"\([^\x00-\x1f\x7f]+\)", "LDAP filter (in parentheses, no line breaks)")]
AttributeName = Annotated[str, Width(64), pattern(
    r"[A-Za-z][A-Za-z0-9-]{0,63}", "LDAP attribute name (a letter, then letters, digits, '-')")]
CaFile = Annotated[str, Width(4096), Field(max_length=4096), pattern(
    r"/[^\x00-\x1f\x7f]*", "CA file (an absolute path)")]

_AD_ENABLED_USERS = ("(&(objectCategory=person)(objectClass=user)"
                     "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
DEFAULT_USER_FILTER = {
    DirectoryKind.OPENLDAP: "(objectClass=inetOrgPerson)",
    # disabled accounts are left out: a disabled user leaves the PBX like a deleted one
    DirectoryKind.ACTIVE_DIRECTORY: _AD_ENABLED_USERS,
}


class AttributeMap(BaseModel):
    """Which directory attribute fills which user field; unset ones take the defaults of
    the server's kind (`DirectorySettings.attributes_for`)."""

    model_config = STRICT

    name: AttributeName | None = None
    login: AttributeName | None = None
    extension: AttributeName | None = None
    email: AttributeName | None = None
    mobile: AttributeName | None = None
    office_did: AttributeName | None = None
    department: AttributeName | None = None
    language: AttributeName | None = None


DEFAULT_ATTRIBUTES: dict[DirectoryKind, dict[str, str | None]] = {
    DirectoryKind.OPENLDAP: {
        "name": "cn", "login": "uid", "extension": "telephoneNumber", "email": "mail",
        "mobile": "mobile", "office_did": None, "department": "departmentNumber",
        "language": "preferredLanguage"},
    DirectoryKind.ACTIVE_DIRECTORY: {
        "name": "displayName", "login": "sAMAccountName", "extension": "ipPhone",
        "email": "mail", "mobile": "mobile", "office_did": "telephoneNumber",
        "department": "department", "language": None},
}
IDENTITY_ATTRIBUTE = {DirectoryKind.OPENLDAP: "entryUUID",
                      DirectoryKind.ACTIVE_DIRECTORY: "objectGUID"}
"""The attribute that names an entry for its whole life (renames and moves included)."""
CHANGE_ATTRIBUTE = {DirectoryKind.OPENLDAP: "modifyTimestamp",
                    DirectoryKind.ACTIVE_DIRECTORY: "uSNChanged"}
"""What an incremental sync asks about: entries changed since the last sync."""


class DirectorySettings(BaseModel):
    """The company directory users are synchronised from (off until `enabled`)."""

    model_config = STRICT

    enabled: bool = False
    kind: DirectoryKind = DirectoryKind.OPENLDAP
    servers: list[DirectoryServer] = Field(default_factory=empty_list)
    """Tried in order; the next one when a server does not answer."""
    security: DirectorySecurity = DirectorySecurity.LDAPS
    ca_file: CaFile | None = None
    """The CA certificates the server's certificate must chain to (PEM); without one, the
    system's. The server's name is always checked against its certificate."""
    bind_dn: DistinguishedName | None = None
    """None: an anonymous bind."""
    base_dn: DistinguishedName | None = None
    user_filter: LdapFilter | None = None
    """None: the kind's default (inetOrgPerson; AD's enabled person accounts)."""
    group_filter: LdapFilter | None = None
    """When set, only members of the groups it finds become users."""
    attributes: AttributeMap = Field(default_factory=AttributeMap)
    acl_group: Identifier = DEFAULT_GROUP
    """The ACL group (WMS 'Profil') of the users the directory creates."""
    extension_first: Extension = "1000"
    extension_last: Extension = "1999"
    """Users whose entry has no usable number get the lowest free extension of this range."""
    page_size: int = Field(default=500, ge=10, le=5000)
    timeout: int = Field(default=10, ge=1, le=120)
    """Seconds to connect and for each answer."""

    @model_validator(mode="after")
    def _usable(self) -> DirectorySettings:
        if int(self.extension_first) > int(self.extension_last):
            raise ValueError("extension_first: must not be after extension_last")
        if self.enabled and not self.servers:
            raise ValueError("servers: an enabled directory needs at least one server")
        if self.enabled and self.base_dn is None:
            raise ValueError("base_dn: an enabled directory needs a base DN")
        return self

    @property
    def effective_user_filter(self) -> str:
        return self.user_filter or DEFAULT_USER_FILTER[self.kind]

    def attributes_for(self) -> dict[str, str]:
        """User field -> directory attribute, the kind's defaults filled in."""
        chosen = DEFAULT_ATTRIBUTES[self.kind] | {
            k: v for k, v in self.attributes.model_dump().items() if v is not None}
        return {field: name for field, name in chosen.items() if name is not None}

    @property
    def identity_attribute(self) -> str:
        return IDENTITY_ATTRIBUTE[self.kind]

    @property
    def change_attribute(self) -> str:
        return CHANGE_ATTRIBUTE[self.kind]
