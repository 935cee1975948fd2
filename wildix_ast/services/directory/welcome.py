"""The call point of the WMS "welcome message" (Users > Envoyer un message de Bienvenue):
every way users are created from outside the settings file (CSV import, directory sync)
calls `welcome_new_users` with the users it created, after they are committed.

Sending waits for the mail queue (the mail issue's SMTP spool): until it lands this records
nothing and sends nothing. The mail queue plugs in here, and only here: queue one mail per
user that has an email (URL, login, no password: the WEB password is only ever a hash)."""

from __future__ import annotations

from collections.abc import Sequence

from wildix_ast.model.users import User


def welcome_new_users(created: Sequence[User]) -> int:
    """Queue the welcome mail of each user of `created` that has an email; how many would be
    sent. The users are committed already: a mail failure must never undo them."""
    return sum(1 for user in created if user.email is not None)
