"""Lookups for call-time services (FastAGI, AMI, a future REST API): each reads only the
rows it needs (one item's row and its child rows, by indexed keys), never the whole site.

A named item (a trunk, a call group, an IVR...) is read with `_named`: the section's row
with that name, then the rows of each child section that belong to it."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, or_, select

from wildix_ast.model.call_groups import CallGroup
from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.dialplan import Procedure
from wildix_ast.model.groups import Group
from wildix_ast.model.ivrs import Ivr
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.sounds import Sound
from wildix_ast.model.time_frames import TimeFrame
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.model.users import User
from wildix_ast.store.access import Access
from wildix_ast.store.columns import Section
from wildix_ast.store.sections import item_data, parent_columns, read_rows, site_data
from wildix_ast.store.tables import (
    CALL_GROUP_MEMBERS,
    CALL_GROUPS,
    GROUPS,
    IVRS,
    PREFERENCES,
    PROCEDURES,
    SECTIONS,
    SOUNDS,
    TIME_FRAMES,
    TRUNK_GROUPS,
    TRUNKS,
    USERS,
    procedure_numbers,
    user_preferences,
    users,
)

_Item = TypeVar("_Item", bound=BaseModel)


def _subtree(section: Section) -> list[Section]:
    """`section` and the sections inside its items, parents first."""
    found = [section]
    for other in SECTIONS:
        if other.parent in found:
            found.append(other)
    return found


def _named(connection: Connection, section: Section, name: str) -> dict[str, Any] | None:
    """The data of the item of `section` called `name`, its child lists included: one
    query per table, each by the item's key (every child table's first column holds it)."""
    parts = _subtree(section)
    rows = {section: read_rows(connection, section, section.table.c.name == name)}
    if not rows[section]:
        return None
    for child in parts[1:]:
        rows[child] = read_rows(connection, child,
                                child.table.c[parent_columns(child)[0]] == name)
    data: dict[str, Any] = site_data(rows, parts)
    for part in section.path.split("."):
        data = data[part]
    return data[0] if isinstance(data, list) else data


def _item(access: Access, model: type[_Item], section: Section, name: str) -> _Item | None:
    with access.reading(f"looking up {section.table_name} {name}") as connection:
        data = _named(connection, section, name)
    return None if data is None else access.valid(model, data)


def trunk_by_name(access: Access, name: str) -> Trunk | None:
    return _item(access, Trunk, TRUNKS, name)


def trunk_group_by_name(access: Access, name: str) -> TrunkGroup | None:
    return _item(access, TrunkGroup, TRUNK_GROUPS, name)


def call_group_by_name(access: Access, name: str) -> CallGroup | None:
    return _item(access, CallGroup, CALL_GROUPS, name)


def ivr_by_name(access: Access, name: str) -> Ivr | None:
    return _item(access, Ivr, IVRS, name)


def time_frame_by_name(access: Access, name: str) -> TimeFrame | None:
    return _item(access, TimeFrame, TIME_FRAMES, name)


def sound_by_name(access: Access, name: str) -> Sound | None:
    return _item(access, Sound, SOUNDS, name)


def procedure_by_name(access: Access, name: str) -> Procedure | None:
    """A procedure with its called numbers and their applications (the built-in `users`
    procedure has none stored: its numbers are the users' extensions)."""
    if name == DEFAULT_PROCEDURE:
        return Procedure(name=DEFAULT_PROCEDURE)
    return _item(access, Procedure, PROCEDURES, name)


def procedures_with_number(access: Access, number: str) -> list[str]:
    """The procedures that list `number` itself among their called numbers (an indexed
    query; a pattern such as `+X.` that matches it is the dialplan's to try)."""
    numbers = procedure_numbers.c
    with access.reading("looking a called number up") as connection:
        return [str(name) for (name,) in connection.execute(
            select(numbers.procedure).where(numbers.number == number).distinct()
            .order_by(numbers.procedure))]


def call_groups_of(access: Access, extension: str) -> list[str]:
    """The call groups the user at `extension` is a member of (by name)."""
    members = CALL_GROUP_MEMBERS.table.c
    with access.reading("looking call groups up") as connection:
        return [str(name) for (name,) in connection.execute(
            select(members.call_group).where(members.extension == extension)
            .order_by(members.call_group))]


def _user_where(access: Access, condition: Any) -> User | None:
    """One user, with its preferences: one query (the preferences row joined)."""
    body = user_preferences.c.body.label("preferences_body")
    with access.reading("looking a user up") as connection:
        found = connection.execute(
            select(users, body).outerjoin(
                user_preferences, user_preferences.c.extension == users.c.extension)
            .where(condition)).first()
    if found is None:
        return None
    row = found._mapping
    data = item_data(USERS, row)
    if row["preferences_body"] is not None:
        data["preferences"] = item_data(PREFERENCES, {"body": row["preferences_body"]})
    return access.valid(User, data)


def user_by_extension(access: Access, extension: str) -> User | None:
    return _user_where(access, users.c.extension == extension)


def user_by_did(access: Access, number: str) -> User | None:
    """The user whose office or fax DID is `number`."""
    return _user_where(access, or_(users.c.office_did == number, users.c.fax_did == number))


def user_by_login(access: Access, login: str) -> User | None:
    """Logins compare without case, as the model's uniqueness rule does."""
    return _user_where(access, users.c.login_key == login.lower())


def group_of(access: Access, extension: str) -> Group | None:
    """The ACL group of the user at `extension`, its call classes included (None if there
    is no such user)."""
    with access.reading("looking a group up") as connection:
        name = connection.execute(select(users.c.group_name).where(
            users.c.extension == extension)).scalar()
        data = None if name is None else _named(connection, GROUPS, str(name))
    return None if data is None else access.valid(Group, data)


def procedure_of(access: Access, extension: str, *, fax: bool = False) -> Procedure | None:
    """The dialplan procedure (the fax one with `fax`) of the user at `extension`."""
    column = users.c.fax_dialplan if fax else users.c.dialplan
    with access.reading("looking a procedure up") as connection:
        name = connection.execute(select(column).where(
            users.c.extension == extension)).scalar()
        if name is None:
            return None
        if name == DEFAULT_PROCEDURE:
            return Procedure(name=DEFAULT_PROCEDURE)
        data = _named(connection, PROCEDURES, str(name))
    return None if data is None else access.valid(Procedure, data)


def preferences_of(access: Access, extension: str) -> Preferences | None:
    """The preferences of the user at `extension` (None if there is no such user): one
    primary-key query, what the FastAGI service reads on every call."""
    with access.reading("looking preferences up") as connection:
        found = connection.execute(
            select(users.c.extension, user_preferences.c.body)
            .outerjoin(user_preferences, user_preferences.c.extension == users.c.extension)
            .where(users.c.extension == extension)).first()
    if found is None:
        return None
    return access.valid(Preferences, json.loads(found.body or "{}"))
