"""The welcome mail to a new user (WMS: the mail a user gets when the account is made): the
collaboration URL, the login and extension, and a way to set the password, in the user's
language (fr, en, it; the site's language, then English, for the others).

The password is never in the mail unless the administrator gives one on purpose. By
default the mail carries a one-time setup link: a random token whose SHA-256 and expiry the
vault keeps (`user:<extension>:password_setup`), so a reader of the store cannot use it;
`setup_token_valid` is what the web page that consumes it asks (that page is not part of
wildix-ast yet: the link's target is the collaboration URL's `/password-setup`)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from wildix_ast.mail.queue import MailQueueError, enqueue_mail
from wildix_ast.model.users import User
from wildix_ast.store.vault import SecretVault, user_secret_key

SETUP_HOURS = 72
_URL = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Welcome to {pbx}",
        "body": "Hello {name},\n\nYour account on the {pbx} phone system is ready.\n\n"
                "Collaboration: {url}\nLogin: {login}\nExtension: {extension}\n\n{password}\n",
        "link": "Choose your password with this link (it works once, for {hours} hours):\n"
                "{link}",
        "given": "Your password: {secret}\nPlease change it after your first login.",
        "none": "Your administrator will tell you how to set your password.",
    },
    "fr": {
        "subject": "Bienvenue sur {pbx}",
        "body": "Bonjour {name},\n\nVotre compte sur le standard téléphonique {pbx} est prêt."
                "\n\nCollaboration : {url}\nIdentifiant : {login}\nExtension : {extension}"
                "\n\n{password}\n",
        "link": "Choisissez votre mot de passe avec ce lien (valable une fois, pendant "
                "{hours} heures) :\n{link}",
        "given": "Votre mot de passe : {secret}\nChangez-le après votre première connexion.",
        "none": "Votre administrateur vous dira comment choisir votre mot de passe.",
    },
    "it": {
        "subject": "Benvenuto su {pbx}",
        "body": "Buongiorno {name},\n\nIl suo account sul centralino {pbx} è pronto.\n\n"
                "Collaboration: {url}\nNome utente: {login}\nInterno: {extension}\n\n"
                "{password}\n",
        "link": "Scelga la sua password con questo link (valido una sola volta, per {hours} "
                "ore):\n{link}",
        "given": "La sua password: {secret}\nLa cambi dopo il primo accesso.",
        "none": "L'amministratore le dirà come impostare la password.",
    },
}
LANGUAGES = tuple(sorted(_TEXTS))


def language_of(user: User, site_language: str) -> str:
    for candidate in (user.language, site_language):
        if candidate and candidate[:2] in _TEXTS:
            return candidate[:2]
    return "en"


def _setup_key(extension: str) -> str:
    return user_secret_key(extension, "password_setup")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_setup_token(vault: SecretVault, extension: str, now: float | None = None) -> str:
    """A one-time token for the password setup link; only its digest is kept."""
    token = secrets.token_urlsafe(24)
    expires = int((now or time.time()) + SETUP_HOURS * 3600)
    vault.put_secret(_setup_key(extension), f"{_digest(token)}:{expires}")
    return token


def setup_token_valid(vault: SecretVault, extension: str, token: str,
                      now: float | None = None) -> bool:
    kept = vault.get_secret(_setup_key(extension))
    if not kept or ":" not in kept:
        return False
    digest, _, expires = kept.partition(":")
    return hmac.compare_digest(digest, _digest(token)) and \
        (now or time.time()) < int(expires or 0)


def welcome_text(user: User, language: str, *, pbx_name: str, collaboration_url: str,
                 setup_link: str | None, password: str | None) -> tuple[str, str]:
    """(subject, body) of the welcome mail."""
    texts = _TEXTS[language]
    if password is not None:
        how = texts["given"].format(secret=password)
    elif setup_link is not None:
        how = texts["link"].format(link=setup_link, hours=SETUP_HOURS)
    else:
        how = texts["none"]
    subject = texts["subject"].format(pbx=pbx_name)
    body = texts["body"].format(name=user.name, pbx=pbx_name, url=collaboration_url,
                                login=user.login or user.email or user.extension,
                                extension=user.extension, password=how)
    return subject, body


def queue_welcome(user: User, vault: SecretVault, *, collaboration_url: str, pbx_name: str,
                  site_language: str, password: str | None = None, key: str | None = None,
                  root: Path | None = None) -> str | None:
    """Queue the welcome mail of `user` (what directory import calls for each new user).

    Without `password` the mail carries a fresh one-time setup link. `key` names the event
    (`<extension>-<import id>`): a retried import queues one mail. Returns the queue id, or
    None when `key` was queued before. Raises MailQueueError for a user without an email
    or a URL that is not http(s)://host[:port][/path]."""
    if user.email is None:
        raise MailQueueError(f"user {user.extension} has no email address")
    url = collaboration_url.rstrip("/")
    if not _URL.fullmatch(url):
        raise MailQueueError(f"not a collaboration URL: {collaboration_url!r} (like "
                             "https://pbx.example.com)")
    link = None
    if password is None:
        token = new_setup_token(vault, user.extension)
        link = f"{url}/password-setup?" + urlencode(
            {"login": user.login or user.extension, "token": token})
    subject, body = welcome_text(user, language_of(user, site_language), pbx_name=pbx_name,
                                 collaboration_url=url, setup_link=link, password=password)
    return enqueue_mail(user.email, subject, body, kind="welcome", key=key, root=root,
                        details={"user": user.extension})
