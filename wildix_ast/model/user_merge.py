"""Users coming from outside the settings file (a CSV file, the company directory) merged
into a site: the same validation as the settings file (the `Site` model), with every problem
located at its source (`users.csv line 12: email ...`, `uid=jo,ou=people,...: mail ...`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model import fields
from wildix_ast.model.site import Site
from wildix_ast.model.users import User, UserType

_USER_INDEX = re.compile(r"users\[(?P<index>\d+)\]")


@dataclass(frozen=True)
class Incoming:
    """One user as a source gives it: where it comes from (for messages) and its data."""

    where: str
    data: dict[str, Any]


@dataclass
class UserChanges:
    """What a merge does to the site's users, by extension."""

    added: list[User] = field(default_factory=list)
    changed: list[tuple[User, User]] = field(default_factory=list)
    """(before, after)."""
    removed: list[User] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.changed)} changed, "
                f"{len(self.removed)} removed")


def _problems(exc: ValidationError, where: str, skip: int = 0) -> list[Problem]:
    found = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"][skip:])
        found.append(Problem(f"{where}: {loc}" if loc else where, fields.message(error)))
    return found


def merge_users(site: Site, incoming: Sequence[Incoming], *, remove: Iterable[str] = (),
                keep: Iterable[str] = (), fill_holes: bool = False
                ) -> tuple[Site, UserChanges]:
    """`site` with each incoming user put in place of the stored one of the same extension
    (or added at the end), and the users at the extensions of `remove` taken out. Fields an
    incoming user does not give (passwords, preferences) are kept from the stored user.
    `keep`: fields an incoming user never overrides. `fill_holes`: the last users take the
    places of removed ones (the order of users means nothing to the source). All problems
    are reported at once, as a SettingsError, and nothing is merged."""
    problems: list[Problem] = []
    by_extension = {u.extension: i for i, u in enumerate(site.users)}
    kept = set(keep)
    users: list[User | None] = list(site.users)
    sources: dict[int, str] = {}
    changes = UserChanges()
    seen: dict[str, str] = {}
    for item in incoming:
        extension = item.data.get("extension")
        if isinstance(extension, str) and extension in seen:
            problems.append(Problem(f"{item.where}: extension", f"{extension} is given "
                                    f"twice (first at {seen[extension]})"))
            continue
        if isinstance(extension, str):
            seen[extension] = item.where
        index = by_extension.get(extension) if isinstance(extension, str) else None
        before = users[index] if index is not None else None
        data = dict(item.data)
        if before is not None:
            stored = before.model_dump(exclude_unset=True)
            data = {**stored, **{k: v for k, v in data.items() if k not in kept}}
        # a field the source leaves empty is unset: its default
        data = {k: v for k, v in data.items() if v is not None}
        try:
            user = User.model_validate(data)
        except ValidationError as exc:
            problems.extend(_problems(exc, item.where))
            continue
        if before is None:
            sources[len(users)] = item.where
            users.append(user)
            changes.added.append(user)
        elif user != before:
            assert index is not None
            sources[index] = item.where
            users[index] = user
            changes.changed.append((before, user))
    for extension in remove:
        index = by_extension.get(extension)
        if index is not None and users[index] is not None:
            changes.removed.append(site.users[index])
            users[index] = None
    if fill_holes:
        # The last users move into the removed ones' places: the store then rewrites a
        # few rows, not the position of every user after the first removed one.
        holes = [i for i, u in enumerate(users) if u is None]
        for hole in holes:
            while users and users[-1] is None:
                users.pop()
            if hole >= len(users):
                break
            last = len(users) - 1
            users[hole] = users.pop()
            if last in sources:
                sources[hole] = sources.pop(last)
    if not changes.any:
        if problems:
            raise SettingsError(f"{len(problems)} problem(s); nothing was imported", problems)
        return site, changes
    remaining = [u for u in users if u is not None]
    places = {new: sources[old] for new, old in enumerate(
        i for i, u in enumerate(users) if u is not None) if old in sources}
    # The users are valid already (each was checked above or came from `site`): given as
    # models, pydantic keeps them as they are and only the rules across rows run again.
    whole: dict[str, Any] = site.model_dump(exclude_unset=True, exclude={"users"})
    whole["users"] = remaining
    try:
        merged = Site.model_validate(whole)
    except ValidationError as exc:
        def label(index: int) -> str:
            return places.get(index) or f"stored user {remaining[index].extension}"

        for error in exc.errors(include_url=False):
            loc = error["loc"]
            if len(loc) >= 2 and loc[0] == "users" and isinstance(loc[1], int):
                index = loc[1]
                message = fields.message(error)
                other = _USER_INDEX.search(message)
                if other is not None:
                    first = int(other["index"])
                    if index not in places and first in places:
                        # a stored user clashes with an incoming one: the incoming one is
                        # what the person just wrote, so the problem is put there
                        index, first = first, index
                    message = _USER_INDEX.sub(label(first), message)
                rest = ".".join(str(p) for p in loc[2:])
                where = label(index)
                problems.append(Problem(f"{where}: {rest}" if rest else where, message))
            else:
                problems.append(Problem(".".join(str(p) for p in loc), fields.message(error)))
        merged = site
    if problems:
        # the rows' own problems and, among the valid rows, those of the rules across rows
        raise SettingsError(f"{len(problems)} problem(s); nothing was imported", problems)
    return merged, changes


def admin_rule_problems(actor: User, changes: UserChanges,
                        where: dict[str, str] | None = None) -> list[Problem]:
    """The seed's rule (WMS Users): "admins cannot edit other admins nor set their passwords;
    only the super administrator can". `actor` is the person making `changes`: an admin may
    not change or remove another admin, nor make a user an admin. (A plain user cannot
    edit users at all.) The super administrator is whoever runs wildix-ast with the store's
    own access (no `--as`): they are not checked. `where`: extension -> source location."""
    located = where or {}
    problems: list[Problem] = []
    if actor.type is not UserType.ADMIN:
        return [Problem("", f"{actor.login or actor.extension} is not an administrator: "
                            "only administrators edit users")]

    def refuse(extension: str, message: str) -> None:
        problems.append(Problem(located.get(extension, f"user {extension}"), message))

    for before, after in changes.changed:
        if before.type is UserType.ADMIN and before.extension != actor.extension:
            refuse(after.extension, "an administrator cannot edit another administrator")
        elif after.type is UserType.ADMIN and before.type is not UserType.ADMIN:
            refuse(after.extension, "an administrator cannot make another administrator")
    for user in changes.added:
        if user.type is UserType.ADMIN:
            refuse(user.extension, "an administrator cannot create another administrator")
    for user in changes.removed:
        if user.type is UserType.ADMIN and user.extension != actor.extension:
            refuse(user.extension, "an administrator cannot remove another administrator")
    return problems
