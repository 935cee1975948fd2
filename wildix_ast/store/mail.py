"""What the mail sender reads from the store, without loading the whole site: the SMTP
profiles (WMS Client SMTP) with their passwords from the vault, and the users' addresses
(the only ones a message Asterisk drops may go to)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.store.vault import smtp_password_key

if TYPE_CHECKING:
    from wildix_ast.store.store import Store


def stored_profiles(store: Store) -> dict[str, SmtpProfile]:
    """name -> profile, password included (owner-only reading: the store's file is)."""
    from pydantic import ValidationError
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.sections import item_data
    from wildix_ast.store.tables import SMTP_PROFILES

    with translated(store.where, "reading the SMTP profiles"), \
            store.engine.connect() as connection:
        rows = connection.execute(select(SMTP_PROFILES.table)
                                  .order_by(SMTP_PROFILES.table.c.position)).all()
    data = [item_data(SMTP_PROFILES, row._mapping) for row in rows]
    passwords = store.get_secrets([smtp_password_key(d["name"]) for d in data])
    profiles: dict[str, SmtpProfile] = {}
    for item in data:
        password = passwords.get(smtp_password_key(item["name"]))
        if password is not None:
            item["password"] = password
        try:
            profiles[item["name"]] = SmtpProfile.model_validate(item)
        except ValidationError as exc:
            raise SettingsError(f"stored SMTP profile {item['name']!r} is not valid", [
                Problem(f"smtp_profiles.{item['name']}", str(exc))]) from None
    return profiles


def user_addresses(store: Store) -> frozenset[str]:
    """Every user's email, lower-cased."""
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import users

    with translated(store.where, "reading the users' addresses"), \
            store.engine.connect() as connection:
        found = connection.execute(select(users.c.email_key)
                                   .where(users.c.email_key.is_not(None))).scalars().all()
    return frozenset(str(address) for address in found)
