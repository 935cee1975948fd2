"""Generated secrets (SIP passwords left out of the settings file, the AMI secret).

They are generated once, kept by a vault (the store in production), and reused on every
render so the output stays byte-identical and phones stay registered. WEB passwords are not
generated: the store keeps only their hash, so a generated one could never be told to anyone
(a user without one cannot log in to the WEB interface until an administrator sets it)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from wildix_ast.model.passwords import generate_password
from wildix_ast.model.site import Site


class SecretVault(Protocol):
    def get_secret(self, key: str) -> str | None: ...

    def put_secret(self, key: str, value: str) -> None: ...

    def get_secrets(self, keys: Iterable[str]) -> dict[str, str]:
        """The kept values of `keys` (absent ones left out)."""
        ...

    def put_secrets(self, values: Mapping[str, str]) -> None:
        """Keep every value at once (one transaction: 10,000 new PINs are one commit)."""
        ...


class MemoryVault:
    """A vault that lives as long as the process: for tests and one-off renders."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self.secrets: dict[str, str] = dict(initial or {})

    def get_secret(self, key: str) -> str | None:
        return self.secrets.get(key)

    def put_secret(self, key: str, value: str) -> None:
        self.secrets[key] = value

    def get_secrets(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.secrets[k] for k in keys if k in self.secrets}

    def put_secrets(self, values: Mapping[str, str]) -> None:
        self.secrets.update(values)


class DraftVault:
    """Reads `kept`'s secrets, keeps new ones in memory only: a dry run (`apply --dry-run`,
    `ansible-playbook --check`) renders and plans exactly as the real run would, but the
    secrets it had to generate are thrown away with it; the real run generates its own."""

    def __init__(self, kept: SecretVault) -> None:
        self.kept = kept
        self.drafted = MemoryVault()

    def get_secret(self, key: str) -> str | None:
        drafted = self.drafted.get_secret(key)
        return drafted if drafted is not None else self.kept.get_secret(key)

    def put_secret(self, key: str, value: str) -> None:
        self.drafted.put_secret(key, value)

    def get_secrets(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(keys)
        return {**self.kept.get_secrets(wanted), **self.drafted.get_secrets(wanted)}

    def put_secrets(self, values: Mapping[str, str]) -> None:
        self.drafted.put_secrets(values)


def _kept_or_generated(vault: SecretVault, key: str) -> str:
    value = vault.get_secret(key)
    if value is None:
        value = generate_password()
        vault.put_secret(key, value)
    return value


def user_secret_key(extension: str, kind: str) -> str:
    return f"user:{extension}:{kind}"


def _kept_or_generated_all(vault: SecretVault, keys: list[str],
                           generate: Callable[[], str]) -> dict[str, str]:
    """key -> value for every key: kept ones read at once, missing ones generated and kept
    at once."""
    kept = vault.get_secrets(keys)
    missing = {key: generate() for key in keys if key not in kept}
    if missing:
        vault.put_secrets(missing)
    return {**kept, **missing}


def smtp_password_key(profile: str) -> str:
    return f"smtp:{profile}:password"


def _smtp_passwords(site: Site, vault: SecretVault) -> Site:
    """An SMTP password the settings file gives is kept by the vault (the profile's row has
    no column for it); a profile without one gets the kept one back (exports, the sender)."""
    given = {smtp_password_key(p.name): p.password for p in site.smtp_profiles
             if p.password is not None}
    if given:
        vault.put_secrets(given)
    missing = [p for p in site.smtp_profiles if p.password is None]
    if not missing:
        return site
    kept = vault.get_secrets([smtp_password_key(p.name) for p in missing])
    profiles = [p.model_copy(update={"password": kept[smtp_password_key(p.name)]})
                if p.password is None and smtp_password_key(p.name) in kept else p
                for p in site.smtp_profiles]
    return site.model_copy(update={"smtp_profiles": profiles})


def mail2fax_secret_key(profile: str, kind: str) -> str:
    """`kind`: password (the mailbox's) or protection (the password a mail must carry)."""
    return f"mail2fax:{profile}:{kind}"


_MAIL2FAX_SECRETS = (("password", "password"), ("protection_password", "protection"))


def _mail2fax_secrets(site: Site, vault: SecretVault) -> Site:
    """Like `_smtp_passwords`, for both secrets of each Mail2Fax profile."""
    profiles = site.mail2fax_profiles
    if not profiles:
        return site
    given = {mail2fax_secret_key(p.name, kind): getattr(p, field) for p in profiles
             for field, kind in _MAIL2FAX_SECRETS if getattr(p, field) is not None}
    if given:
        vault.put_secrets(given)
    kept = vault.get_secrets([mail2fax_secret_key(p.name, kind) for p in profiles
                              for field, kind in _MAIL2FAX_SECRETS
                              if getattr(p, field) is None])
    filled = []
    for profile in profiles:
        update = {field: kept[mail2fax_secret_key(profile.name, kind)]
                  for field, kind in _MAIL2FAX_SECRETS if getattr(profile, field) is None
                  and mail2fax_secret_key(profile.name, kind) in kept}
        filled.append(profile.model_copy(update=update) if update else profile)
    return site.model_copy(update={"mail2fax_profiles": filled})


def cdr_password_key(backend: str) -> str:
    return f"cdr:{backend}:password"


def with_backend_passwords(site: Site, vault: SecretVault) -> Site:
    """The call history backends' passwords: given ones kept by the vault (the backend's row
    has no column for them), missing ones read back from it (the collector, `cdr` verbs,
    exports with secrets). Generates nothing."""
    backends = site.call_history.backends
    given = {cdr_password_key(b.name): b.password for b in backends if b.password is not None}
    if given:
        vault.put_secrets(given)
    missing = [b for b in backends if b.password is None]
    if not missing:
        return site
    kept = vault.get_secrets([cdr_password_key(b.name) for b in missing])
    if not kept:
        return site
    filled = [b.model_copy(update={"password": kept[cdr_password_key(b.name)]})
              if b.password is None and cdr_password_key(b.name) in kept else b
              for b in backends]
    history = site.call_history.model_copy(update={"backends": filled})
    return site.model_copy(update={"call_history": history})


def with_secrets(site: Site, vault: SecretVault) -> Site:
    """`site` with every missing SIP password filled from the vault (generated if new), and
    its SMTP passwords: given ones kept by the vault, missing ones read back from it."""
    site = _smtp_passwords(site, vault)
    site = _mail2fax_secrets(site, vault)
    site = with_backend_passwords(site, vault)
    # a parking slot neither registers nor logs in
    wanting = [u for u in site.users if u.type.has_phone and u.sip_password is None]
    if not wanting:
        return site
    values = _kept_or_generated_all(
        vault, [user_secret_key(u.extension, "sip") for u in wanting], generate_password)
    users = [u.model_copy(update={"sip_password": values[user_secret_key(u.extension, "sip")]})
             if u.type.has_phone and u.sip_password is None else u for u in site.users]
    return site.model_copy(update={"users": users})


VOICEMAIL_PIN_DIGITS = 6


def voicemail_pins(site: Site, vault: SecretVault) -> dict[str, str]:
    """extension -> voicemail PIN of every user with a phone: random digits, generated once
    and kept in the vault (key `user:<extension>:voicemail_pin`) like SIP passwords."""
    phones = [u.extension for u in site.users if u.type.has_phone]
    values = _kept_or_generated_all(
        vault, [user_secret_key(ext, "voicemail_pin") for ext in phones],
        lambda: "".join(secrets.choice(string.digits) for _ in range(VOICEMAIL_PIN_DIGITS)))
    return {ext: values[user_secret_key(ext, "voicemail_pin")] for ext in phones}


def manager_secret(vault: SecretVault, username: str) -> str:
    return _kept_or_generated(vault, f"manager:{username}")


def realtime_secret(vault: SecretVault, username: str) -> str:
    """The password of Asterisk's realtime database account (PostgreSQL), generated once."""
    return _kept_or_generated(vault, f"realtime:{username}")


#: The FastAGI key's name in the vault: the dialplan sends it in every `agi://` request,
#: the FastAGI service reads it here (read only: it never generates one).
FASTAGI_KEY = "fastagi:key"


def fastagi_key(vault: SecretVault) -> str:
    """The key that authenticates Asterisk to the FastAGI service: 48 hex digits (a URL
    path segment as it is), generated once."""
    return _kept_or_generated_all(vault, [FASTAGI_KEY], lambda: secrets.token_hex(24))[
        FASTAGI_KEY]
