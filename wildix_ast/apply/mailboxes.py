"""The voicemail messages of users who are gone (GDPR): once an apply has put a site on its
target, the mailbox folders of the voicemail context that belong to no user of the site
(`<astspooldir>/voicemail/<context>/<extension>/`: greetings and recorded messages) are
removed from the target's spool, so a user deleted by `user delete`, a settings import or
a directory sync keeps no message on the Asterisk host.

Only folders named like an extension (2 to 8 digits) directly in the context's folder are
touched; a symbolic link is never followed (it is unlinked, not its target emptied), and
each path is made from the target's spool folder and a name checked here, never from an
outside value."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from wildix_ast.asterisk.names import VOICEMAIL_CONTEXT
from wildix_ast.errors import WildixError

_EXTENSION = re.compile(r"^[0-9]{2,8}$")


def mailbox_folder(spool_dir: Path, extension: str) -> Path:
    """Where Asterisk keeps the mailbox of `extension` (checked: 2 to 8 digits)."""
    if not _EXTENSION.match(extension):
        raise ValueError(f"{extension!r} is not an extension")
    return spool_dir / "voicemail" / VOICEMAIL_CONTEXT / extension


def stored_mailboxes(spool_dir: Path) -> list[str]:
    """The extensions that have a mailbox folder on the target."""
    folder = spool_dir / "voicemail" / VOICEMAIL_CONTEXT
    if not folder.is_dir():
        return []
    if (spool_dir / "voicemail").is_symlink() or folder.is_symlink():
        # Asterisk's account can write the spool: a link there must not turn this into
        # the removal of digit-named folders elsewhere
        raise WildixError(f"{folder} (or its parent) is a symbolic link: the voicemail of "
                          "removed users was not removed; make it a real folder")
    return sorted(entry.name for entry in os.scandir(folder) if _EXTENSION.match(entry.name))


def remove_gone_mailboxes(spool_dir: Path | None, extensions: set[str]) -> list[str]:
    """Remove the mailbox folders of every extension not in `extensions` (the users that
    have a mailbox); the extensions whose folder was removed."""
    if spool_dir is None:
        return []
    removed = []
    for extension in stored_mailboxes(spool_dir):
        if extension in extensions:
            continue
        path = mailbox_folder(spool_dir, extension)
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)
        removed.append(extension)
    return removed
