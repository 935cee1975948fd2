"""Lookups for call-time services (FastAGI, AMI, a future REST API): each reads only the
rows it needs, one indexed query or two, never the whole site."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import or_, select

from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.dialplan import Procedure
from wildix_ast.model.groups import Group
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.users import User
from wildix_ast.store.access import Access
from wildix_ast.store.sections import item_data, read_rows
from wildix_ast.store.tables import (
    GROUPS,
    PREFERENCES,
    PROCEDURES,
    USERS,
    acl_groups,
    documents,
    user_preferences,
    users,
)


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
    """The ACL group of the user at `extension` (None if there is no such user)."""
    with access.reading("looking a group up") as connection:
        rows = read_rows(connection, GROUPS, acl_groups.c.name == select(
            users.c.group_name).where(users.c.extension == extension).scalar_subquery())
    return access.valid(Group, item_data(GROUPS, rows[0])) if rows else None


def procedure_of(access: Access, extension: str, *, fax: bool = False) -> Procedure | None:
    """The dialplan procedure (the fax one with `fax`) of the user at `extension`."""
    column = users.c.fax_dialplan if fax else users.c.dialplan
    with access.reading("looking a procedure up") as connection:
        name = connection.execute(select(column).where(
            users.c.extension == extension)).scalar()
        rows = [] if name is None else read_rows(
            connection, PROCEDURES, PROCEDURES.table.c.name == name)
        numbers = connection.execute(select(documents.c.body).where(
            documents.c.name == "procedure_numbers")).scalar() if rows else None
    if name == DEFAULT_PROCEDURE:
        return Procedure(name=DEFAULT_PROCEDURE)
    if not rows:
        return None
    data = item_data(PROCEDURES, rows[0])
    data["numbers"] = json.loads(numbers or "{}").get(name, [])
    return access.valid(Procedure, data)


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
