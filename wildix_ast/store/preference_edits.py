"""Changing one user's preferences (the handset's feature codes, `wildix-ast users set`):
read, change and write under the store's write lock, checked with the user's own fields."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from sqlalchemy import insert, update

from wildix_ast.errors import Problem, SettingsError, StoreError, UnknownUserError, WildixError
from wildix_ast.model import fields
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.users import User
from wildix_ast.store.access import Access
from wildix_ast.store.sections import item_data, read_rows
from wildix_ast.store.tables import (
    PREFERENCES,
    USERS,
    preferences_json,
    site_state,
    user_preferences,
)
from wildix_ast.testing.crash_points import crash_point


def _located(location: tuple[int | str, ...], message: str) -> Problem:
    """A problem of a user's preferences: rules across the user's fields say their field
    first (`preferences.hotline.number: ...`), which becomes the location."""
    where = ".".join(str(part) for part in location)
    if not where and message.startswith("preferences.") and ": " in message:
        where, message = message.split(": ", 1)
    return Problem(where.removeprefix("preferences."), message)


def change_preferences(access: Access, extension: str,
                       change: Callable[[Preferences], Preferences]) -> Preferences:
    """Replace the preferences of the user at `extension` with `change(current)`, in one
    transaction that holds the store's write lock from the read to the write: two changes
    at once both apply, one after the other, and an error (a refused value, a lost
    database) leaves the stored preferences as they were. The result is checked with
    the user's own fields (wildix_ast.model.users.User) before it is written.

    The revision grows (call-time services see the change on the next call; no Asterisk
    reload is involved) and the stored site digest is dropped, and the user's, so the next
    import of a settings file sets the preferences it gives even if the file itself is
    unchanged."""
    try:
        with access.writing("changing preferences") as connection:
            # First a write: the lock that serialises imports and other changes.
            connection.execute(update(site_state).where(site_state.c.id == 1)
                               .values(revision=site_state.c.revision))
            rows = read_rows(connection, USERS, USERS.table.c.extension == extension)
            if not rows:
                raise UnknownUserError(f"no user has extension {extension}")
            stored = read_rows(connection, PREFERENCES,
                               user_preferences.c.extension == extension)
            current = access.valid(Preferences, item_data(PREFERENCES, stored[0])
                                   if stored else {})
            wanted = change(current)
            user = item_data(USERS, rows[0])
            try:
                User.model_validate({**user, "preferences": wanted.model_dump()})
            except ValidationError as exc:
                problems = [_located(e["loc"], fields.message(e))
                            for e in exc.errors(include_url=False)]
                raise SettingsError(f"the preferences of user {extension} are not "
                                    "valid; nothing was changed", problems) from None
            body = preferences_json(wanted)
            if stored and stored[0]["body"] == body:
                return wanted
            if stored:
                connection.execute(update(user_preferences).where(
                    user_preferences.c.extension == extension).values(body=body))
            else:
                connection.execute(insert(user_preferences).values(
                    extension=extension, body=body))
            # the user's digest no longer says its preferences: the next import compares
            # them (`site_rows.FOLLOW_OWNER`) and sets those the settings file gives
            connection.execute(update(USERS.table).where(
                USERS.table.c.extension == extension).values(digest=None))
            crash_point("preferences-before-commit")
            connection.execute(update(site_state).where(site_state.c.id == 1).values(
                revision=site_state.c.revision + 1, digest=None))
    except WildixError:
        raise
    except Exception as exc:
        raise StoreError(f"changing the preferences of {extension} failed, they are "
                         f"unchanged: {type(exc).__name__}: {exc}") from exc
    return wanted
