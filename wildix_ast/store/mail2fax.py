"""What Mail2Fax reads from the store: the profiles with their two secrets from the vault
(the mailbox's password and the protection password)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.store.vault import mail2fax_secret_key

if TYPE_CHECKING:
    from wildix_ast.model.site import Site
    from wildix_ast.store.store import Store


def profiles_with_secrets(store: Store, site: Site) -> list[Mail2FaxProfile]:
    """The site's Mail2Fax profiles, each with its kept password and protection password
    (owner-only reading: the store's file is)."""
    keys = [mail2fax_secret_key(p.name, kind) for p in site.mail2fax_profiles
            for kind in ("password", "protection")]
    kept = store.get_secrets(keys)
    return [p.model_copy(update={
        "password": kept.get(mail2fax_secret_key(p.name, "password"), p.password),
        "protection_password": kept.get(mail2fax_secret_key(p.name, "protection"),
                                        p.protection_password)})
        for p in site.mail2fax_profiles]
