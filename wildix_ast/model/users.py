"""WMS Users: one row of the WMS user table."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from wildix_ast.model.common import DEFAULT_GROUP, DEFAULT_PROCEDURE, STRICT
from wildix_ast.model.fields import (
    Email,
    Extension,
    FreeText,
    Identifier,
    Language,
    Login,
    PhoneNumber,
)
from wildix_ast.model.passwords import is_password_hash, password_problems
from wildix_ast.model.preferences import NO_PREFERENCES, Preferences, no_preferences


class UserType(StrEnum):
    ADMIN = "admin"
    USER = "user"
    FAX = "fax"
    PARK_ORBIT = "park_orbit"
    ROOM = "room"

    @property
    def has_phone(self) -> bool:
        """Park orbits are parking slots, not phones: they get no SIP endpoint."""
        # a module global: reading a member off the class costs a descriptor call on 3.11,
        # and renderers ask this of every user of a large site several times
        return self is not _PARK_ORBIT


_PARK_ORBIT = UserType.PARK_ORBIT


class VoicemailEmail(StrEnum):
    """WMS: what a new voicemail does to the owner's email (when the user has one)."""

    #: a mail with the recording attached; the message stays in the mailbox
    ATTACH = "attach"
    #: a mail that a message arrived, without the audio
    NOTIFY = "notify"
    #: a mail with the recording, and the message deleted from the mailbox
    ATTACH_AND_DELETE = "attach_and_delete"


def _policy(value: str) -> str:
    problems = password_problems(value)
    if problems:
        raise ValueError("password " + "; ".join(problems))
    return value


def _policy_unless_hash(value: str) -> str:
    # An export carries the stored hash of a WEB password; importing it back keeps it.
    return value if is_password_hash(value) else _policy(value)


Password = Annotated[str, AfterValidator(_policy)]
WebPassword = Annotated[str, AfterValidator(_policy_unless_hash)]
"""A WEB password as written by a person (the policy applies), or its argon2id hash."""


class User(BaseModel):
    """A WMS user. SIP passwords left out of the settings file are generated once and kept
    in the store, so they survive re-imports and are never printed unless exported. WEB
    passwords are stored as an argon2id hash only; without one the WEB login stays locked."""

    model_config = STRICT

    type: UserType = UserType.USER
    name: FreeText
    login: Login | None = None
    extension: Extension
    office_did: PhoneNumber | None = None
    fax_did: PhoneNumber | None = None
    email: Email | None = None
    mobile: PhoneNumber | None = None
    language: Language | None = None
    group: Identifier = DEFAULT_GROUP
    department: FreeText | None = None
    dialplan: Identifier = DEFAULT_PROCEDURE
    fax_dialplan: Identifier = DEFAULT_PROCEDURE
    voicemail_email: VoicemailEmail = VoicemailEmail.ATTACH
    web_password: WebPassword | None = Field(default=None, repr=False)
    sip_password: Password | None = Field(default=None, repr=False)
    preferences: Preferences = Field(default_factory=no_preferences)

    @model_validator(mode="after")
    def _preferences_fit(self) -> User:
        # Rules between the preferences and the user's own fields (wildix_ast.model.preferences).
        if self.preferences is NO_PREFERENCES:
            return self  # the defaults forward nowhere, ring no mobile, share no mailbox
        for where, number in self.preferences.forward_targets():
            if number == self.extension:
                raise ValueError(f"preferences.{where}: {number} is this user's own "
                                 "extension (the call would loop)")
        for name in ("internal", "external"):
            if getattr(self.preferences, name).mobility and self.mobile is None:
                raise ValueError(f"preferences.{name}.mobility: needs the user's mobile "
                                 "number")
        if self.preferences.shared_voicemail == self.extension:
            raise ValueError("preferences.shared_voicemail: a user's own mailbox is "
                             "already theirs")
        return self
