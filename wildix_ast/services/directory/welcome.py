"""The WMS "welcome message" (Users > Envoyer un message de Bienvenue) for users created from
outside the settings file (CSV import, directory sync): `welcome_new_users` queues one mail
per new user with an email, through the PBX's one mail queue (`wildix_ast.mail`), after the
users are committed.

The mail carries the collaboration URL, the login and a one-time link to choose a password
(never a password: the WEB password is only ever a hash). The URL comes from
`WILDIX_AST_COLLABORATION_URL`; without it no mail is queued and the caller says so (the
`user welcome` verb sends one later). Each mail is keyed by the user and the event (the
store revision the import left), so a retried import queues it once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from wildix_ast.errors import WildixError
from wildix_ast.model.site import Site
from wildix_ast.model.users import User
from wildix_ast.store.vault import SecretVault

URL_ENV = "WILDIX_AST_COLLABORATION_URL"


@dataclass
class Welcome:
    """What `welcome_new_users` did: mails queued, and why the others were not."""

    queued: int = 0
    skipped: list[str] = field(default_factory=list)


def welcome_new_users(created: Sequence[User], vault: SecretVault, site: Site,
                      event: str) -> Welcome:
    """Queue the welcome mail of each user of `created` that has an email. The users are
    committed already: a mail that cannot be queued is reported, never undoes them."""
    from wildix_ast.mail.welcome import queue_welcome

    done = Welcome()
    url = os.environ.get(URL_ENV)
    wanting = [u for u in created if u.email is not None]
    if not wanting:
        return done
    if not url:
        done.skipped.append(f"{len(wanting)} welcome mail(s) not queued: {URL_ENV} is not "
                            "set (send them later with `wildix-ast user welcome EXT`)")
        return done
    for user in wanting:
        try:
            ident = queue_welcome(user, vault, collaboration_url=url,
                                  pbx_name=site.system.pbx_name,
                                  site_language=site.system.language_region.language,
                                  key=f"welcome-{user.extension}-{event}")
        except WildixError as exc:
            done.skipped.append(f"{user.extension}: {exc.message}")
            continue
        done.queued += ident is not None
    return done
