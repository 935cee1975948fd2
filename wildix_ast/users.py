"""WMS Users: one row of the WMS user table."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from wildix_ast.fields import Email, Extension, FreeText, Identifier, Language, Login, PhoneNumber
from wildix_ast.groups import DEFAULT_GROUP
from wildix_ast.passwords import password_problems
from wildix_ast.system import STRICT

DEFAULT_PROCEDURE = "users"


class UserType(StrEnum):
    ADMIN = "admin"
    USER = "user"
    FAX = "fax"
    PARK_ORBIT = "park_orbit"
    ROOM = "room"

    @property
    def has_phone(self) -> bool:
        """Park orbits are parking slots, not phones: they get no SIP endpoint."""
        return self is not UserType.PARK_ORBIT


def _policy(value: str) -> str:
    problems = password_problems(value)
    if problems:
        raise ValueError("password " + "; ".join(problems))
    return value


Password = Annotated[str, AfterValidator(_policy)]


class User(BaseModel):
    """A WMS user. Passwords left out of the settings file are generated once and kept in
    the store, so they survive re-imports and are never printed unless exported."""

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
    web_password: Password | None = Field(default=None, repr=False)
    sip_password: Password | None = Field(default=None, repr=False)
