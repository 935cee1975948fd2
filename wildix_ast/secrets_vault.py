"""Generated secrets (SIP passwords left out of the settings file, the AMI secret).

They are generated once, kept by a vault (the store in production), and reused on every
render so the output stays byte-identical and phones stay registered. WEB passwords are not
generated: the store keeps only their hash, so a generated one could never be told to anyone
(a user without one cannot log in to the WEB interface until an administrator sets it)."""

from __future__ import annotations

import secrets
import string
from typing import Protocol

from wildix_ast.passwords import generate_password
from wildix_ast.site import Site


class SecretVault(Protocol):
    def get_secret(self, key: str) -> str | None: ...

    def put_secret(self, key: str, value: str) -> None: ...


class MemoryVault:
    """A vault that lives as long as the process: for tests and one-off renders."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self.secrets: dict[str, str] = dict(initial or {})

    def get_secret(self, key: str) -> str | None:
        return self.secrets.get(key)

    def put_secret(self, key: str, value: str) -> None:
        self.secrets[key] = value


def _kept_or_generated(vault: SecretVault, key: str) -> str:
    value = vault.get_secret(key)
    if value is None:
        value = generate_password()
        vault.put_secret(key, value)
    return value


def user_secret_key(extension: str, kind: str) -> str:
    return f"user:{extension}:{kind}"


def with_secrets(site: Site, vault: SecretVault) -> Site:
    """`site` with every missing SIP password filled from the vault (generated if new)."""
    users = []
    for user in site.users:
        if not user.type.has_phone:  # a parking slot neither registers nor logs in
            users.append(user)
            continue
        if user.sip_password is None:
            users.append(user.model_copy(update={"sip_password": _kept_or_generated(
                vault, user_secret_key(user.extension, "sip"))}))
        else:
            users.append(user)
    return site.model_copy(update={"users": users})


VOICEMAIL_PIN_DIGITS = 6


def voicemail_pins(site: Site, vault: SecretVault) -> dict[str, str]:
    """extension -> voicemail PIN of every user with a phone: random digits, generated once
    and kept in the vault (key `user:<extension>:voicemail_pin`) like SIP passwords."""
    pins: dict[str, str] = {}
    for user in site.users:
        if not user.type.has_phone:
            continue
        key = user_secret_key(user.extension, "voicemail_pin")
        pin = vault.get_secret(key)
        if pin is None:
            pin = "".join(secrets.choice(string.digits) for _ in range(VOICEMAIL_PIN_DIGITS))
            vault.put_secret(key, pin)
        pins[user.extension] = pin
    return pins


def manager_secret(vault: SecretVault, username: str) -> str:
    return _kept_or_generated(vault, f"manager:{username}")
