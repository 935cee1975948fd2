"""Keyed tags of WEB password texts: an unchanged text costs no argon2id on import.

A settings file may give a WEB password as text; the store keeps only its argon2id hash.
Verifying each text against its hash on every import costs ~40 ms per user (115 s for
10,000 users). Instead, the import keeps beside each hash a tag: HMAC-SHA256, under a key
kept in a file outside the store, of the hash and the text. A text whose tag matches is the
one the hash was made from: no argon2id work. A text without a matching tag (new, changed,
a hash replaced, or a store imported on a host with another key) goes through argon2id.

The key file (`WILDIX_AST_PASSWORD_KEY`, else `~/.config/wildix-ast/password-tag.key`) is
32 random bytes, owner-only (0600 in a 0700 folder), made on first use, never in the store:
someone with the store alone holds tags under an unknown 256-bit key, useless to test a
guess, and the argon2id hashes; someone with the key file too can test guesses at HMAC
speed (docs/security.md)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from wildix_ast.errors import StoreError

SITE_TAG_LENGTH = 32
"""`site_state.digest`'s width (`store.columns.DIGEST`; not imported: this module is on the
SQLite path that never loads SQLAlchemy). PostgreSQL and MariaDB refuse a longer value."""

KEY_ENV = "WILDIX_AST_PASSWORD_KEY"
DEFAULT_KEY_FILE = Path("~/.config/wildix-ast/password-tag.key")
KEY_BYTES = 32
#: The vault kind under which a user's tag is kept (`user:<extension>:web_tag`).
TAG_KIND = "web_tag"


def key_file() -> Path:
    """Where the key is: `$WILDIX_AST_PASSWORD_KEY`, else the user's config folder."""
    value = os.environ.get(KEY_ENV)
    return Path(value) if value else DEFAULT_KEY_FILE.expanduser()


@functools.cache
def _key_at(path: Path) -> bytes:
    try:
        return _read_or_make(path)
    except OSError as exc:
        raise StoreError(f"the WEB password tag key {path}: {exc.strerror or exc}; set "
                         f"{KEY_ENV} to an owner-only file this user may create") from exc


def _read_or_make(path: Path) -> bytes:
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
            file.flush()
            os.fsync(file.fileno())
        # link() fails if another process made the key meanwhile: its key wins, whole
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & 0o077:
        raise StoreError(f"the WEB password tag key {path} is readable by others "
                         f"(mode {info.st_mode & 0o777:o}): chmod 600 it")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise StoreError(f"the WEB password tag key {path} is not {KEY_BYTES} bytes: "
                         "remove it (a new one is made; each text is verified once more)")
    return key


def tag_key() -> bytes:
    """The key, read (or made) once per process."""
    return _key_at(key_file())


def password_tag(key: bytes, extension: str, hashed: str, text: str) -> str:
    """The tag of `text` as the password `hashed` was made from, for the user at
    `extension`: bound to the hash, so a replaced hash leaves the old tag useless."""
    message = "\0".join(("web-password", extension, hashed, text)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def tag_matches(key: bytes, extension: str, hashed: str, text: str, kept: str | None) -> bool:
    return kept is not None and hmac.compare_digest(
        password_tag(key, extension, hashed, text), kept)


def site_tag(key: bytes, serialized: bytes) -> str:
    """A keyed digest of a whole site holding WEB password texts (an unkeyed one would be a
    fast hash of the passwords). It fits the stored digest's column (`SITE_TAG_LENGTH`):
    "k" and 31 hex digits of the HMAC (124 bits), never equal to an unkeyed digest (32 hex
    digits)."""
    return "k" + hmac.new(key, serialized, hashlib.sha256).hexdigest()[:SITE_TAG_LENGTH - 1]
