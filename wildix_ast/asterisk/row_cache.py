"""Each user's realtime rows kept between applies (issue 22): a one-user change renders,
parses and derives the rows of that user only, not of the 10,000 others.

A user's rows (endpoint, auth, AOR, mailbox) are what pjsip.conf and voicemail.conf say of
them (`render._realtime_rows`). They depend on the user's own entry (with its SIP password
and voicemail PIN), on whether the mailbox it shares exists, and on the rest of the site and
the render's inputs (system settings, groups, dialplans, secrets, paths, the two templates,
the code that renders them): the **context**. Each user's entry is found under

    HMAC-SHA256(key, context digest, the user's JSON, its PIN, its shared mailbox's state)

so a change of the context (a group, a setting, a template override, a new version of
wildix-ast) misses every user and renders them all again; a change of one user misses that
user only. A user missed is rendered in a site of the missed users (and the mailboxes they
share), with the same views and templates as the whole render.

The key is derived from the WEB password tag key (`store.password_tags`: 32 random bytes in
an owner-only file outside the store): the user's JSON holds its WEB password as the
settings file gives it (a text, or its argon2id hash), and an unkeyed digest of it would let
whoever reads the cache test a guessed text at SHA-256 speed. Under an unknown 256-bit key
the digests test nothing. The rows hold SIP passwords and PINs in clear, as
wildix-realtime.conf and the realtime tables do: the cache file is owner-only (0600 in a 0700
folder under `cache.cache_dir()`).

Beside each user's rows (kept marshalled, unmarshalled only when asked) the cache keeps
their sections as wildix-realtime.conf lays them out (`UserBlocks`): the rows file is joined
from them (`render._joined_rows_file`), so a one-user change lays out one user's sections.

The file is `MAGIC`, an HMAC of the body under the same key, then the body (`marshal`). It is
written atomically (a temporary file renamed over it); one that is short, altered, from
another key or another Python is not trusted (nor unmarshalled): the render then derives
every user, as without a cache. A cache that cannot be read or written is a slower render."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import marshal
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.store.realtime import RealtimeRows, Row

MAGIC = b"wxrows2\n"
#: Values shorter than this are interned (`_shared`): option values, not passwords or names
SHORT = 24
FOLDER = "realtime-rows"
#: Contexts kept (one file each: a lab and the host, a site and its next version...)
KEEP = 4
#: The code a user's rows come from: a change to any of it (a new version) misses all.
_CODE_FOLDERS = ("asterisk", "model")
_CODE_FILES = ("conf.py", "store/realtime.py")

UserRows = tuple[Row | None, Row | None, Row | None, Row | None]
"""A user's endpoint, auth, AOR and mailbox rows (None: the user has none)."""
UserBlocks = tuple[str, str, str, str]
"""The same rows as wildix-realtime.conf lays them out (each its section's text; "": the
user has none): the file is joined from them (`render._realtime_rows`)."""


def _package() -> Path:
    return Path(__file__).resolve().parent.parent


def code_fingerprint() -> str:
    """The files a user's rows come from, by name, size and modification time."""
    root = _package()
    seen: list[str] = []
    paths = [p for folder in _CODE_FOLDERS for p in sorted((root / folder).glob("*.py"))]
    paths += [root / name for name in _CODE_FILES]
    for path in paths:
        with contextlib.suppress(OSError):
            info = path.stat()
            seen.append(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(seen)


def cache_key() -> bytes | None:
    """The cache's HMAC key, derived from the password tag key (None: no key file can be
    read or made: no cache)."""
    from wildix_ast.errors import WildixError
    from wildix_ast.store.password_tags import tag_key

    try:
        return hmac.new(tag_key(), b"wildix-ast realtime row cache", hashlib.sha256).digest()
    except WildixError:
        return None


@dataclass
class RowCache:
    """The rows of the users of one context (see the module documentation)."""

    key: bytes
    context: str
    folder: Path
    entries: dict[str, bytes] = field(default_factory=dict)
    """Each user's rows, marshalled (`rows_of`)."""
    blocks: dict[str, UserBlocks] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    new_blocks: int = 0
    _context_mac: hmac.HMAC | None = field(default=None, repr=False, compare=False)
    hits: int = 0
    misses: int = 0

    @property
    def path(self) -> Path:
        name = hmac.new(self.key, self.context.encode(), hashlib.sha256).hexdigest()[:32]
        return self.folder / f"{name}.bin"

    def user_key(self, user_json: bytes, pin: str, shared: str) -> str:
        if self._context_mac is None:  # the context's part once, copied for each user
            self._context_mac = hmac.new(self.key, self.context.encode(), hashlib.sha256)
        mac = self._context_mac.copy()
        mac.update(b"\0" + user_json + b"\0" + pin.encode() + b"\0" + shared.encode())
        return mac.hexdigest()

    def load(self) -> None:
        """The entries kept for this context; none if the file is missing or not trusted."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return
        self.entries, self.blocks = _trusted(self.key, data)

    def has(self, user_key: str) -> bool:
        """Whether the rows of `user_key` are kept (counted as a hit or a miss)."""
        if user_key in self.entries:
            self.hits += 1
            self.used.add(user_key)
            return True
        self.misses += 1
        return False

    def get(self, user_key: str) -> UserRows | None:
        if not self.has(user_key):
            return None
        return self.rows_of(user_key)

    def rows_of(self, user_key: str) -> UserRows:
        """The kept rows of a user `has` found (each kept marshalled: a render that joins
        the rows file from the blocks never needs the rows of a user it did not derive)."""
        loaded = marshal.loads(self.entries[user_key])
        if not (isinstance(loaded, tuple) and len(loaded) == 4):
            raise ValueError("a row cache entry is not a user's rows")
        return (loaded[0], loaded[1], loaded[2], loaded[3])

    def put(self, user_key: str, rows: UserRows) -> None:
        self.entries[user_key] = marshal.dumps(
            (_shared(rows[0]), _shared(rows[1]), _shared(rows[2]), _shared(rows[3])))
        self.used.add(user_key)

    def blocks_of(self, user_key: str) -> UserBlocks | None:
        return self.blocks.get(user_key)

    def put_blocks(self, user_key: str, blocks: UserBlocks) -> None:
        self.blocks[user_key] = blocks
        self.new_blocks += 1

    def save(self) -> None:
        """Keep the entries of this render's users (only when something changed), and the
        newest `KEEP` contexts; after `defer_saves`, at `flush_saves`."""
        if _deferred:
            _pending[self.path] = self
            return
        self._save_now()

    def _save_now(self) -> None:
        from wildix_ast.cache import writable

        if not writable() or (self.misses == 0 and self.new_blocks == 0
                              and len(self.used) == len(self.entries)):
            return
        kept = {k: v for k, v in self.entries.items() if k in self.used}
        body = marshal.dumps((kept, {k: v for k, v in self.blocks.items() if k in kept}))
        data = MAGIC + hmac.new(self.key, body, hashlib.sha256).digest() + body
        with contextlib.suppress(OSError):
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_private(self.path, data)
            _prune(self.folder, self.path)


_deferred = 0
_pending: dict[Path, RowCache] = {}


@contextlib.contextmanager
def deferred_saves() -> Iterator[None]:
    """Inside (an apply), a cache is written when the block ends, however it ends, not
    during the render: writing the cache (18 MB at 10,000 users) is not on the way to the
    change being live, and what it keeps does not depend on how the apply ends."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
        if not _deferred:
            while _pending:
                _, cache = _pending.popitem()
                cache._save_now()


def _shared(row: Row | None) -> Row | None:
    """`row` with its column names and short values interned: marshal writes a string met
    again as a reference, so a user's repeated `yes`, `no`... are kept once."""
    if row is None:
        return None
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) and len(v) < SHORT else v
            for k, v in row.items()}


def _trusted(key: bytes,
             data: bytes) -> tuple[dict[str, bytes], dict[str, UserBlocks]]:
    """The entries (rows, blocks) of a cache file, or none when it is not whole and ours."""
    head = len(MAGIC) + hashlib.sha256().digest_size
    if len(data) < head or not data.startswith(MAGIC):
        return {}, {}
    body = data[head:]
    if not hmac.compare_digest(data[len(MAGIC):head],
                               hmac.new(key, body, hashlib.sha256).digest()):
        return {}, {}
    try:
        loaded = marshal.loads(body)
    except (ValueError, EOFError, TypeError):
        return {}, {}
    if not (isinstance(loaded, tuple) and len(loaded) == 2
            and all(isinstance(part, dict) for part in loaded)):
        return {}, {}
    return loaded[0], loaded[1]


def _write_private(path: Path, data: bytes) -> None:
    """Atomic, owner-only: a temporary file in the same folder renamed over `path`."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def _prune(folder: Path, current: Path) -> None:
    files = sorted((p for p in folder.glob("*.bin") if p != current),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[KEEP - 1:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def open_cache(context: str) -> RowCache | None:
    """The cache of `context` (None: no key, no cache; a dry run makes no key)."""
    from wildix_ast.cache import cache_dir, writable
    from wildix_ast.store.password_tags import key_file

    if not writable() and not key_file().is_file():
        return None
    key = cache_key()
    if key is None:
        return None
    cache = RowCache(key, context, cache_dir() / FOLDER)
    cache.load()
    return cache


def context_digest(parts: Iterable[str | bytes]) -> str:
    """A digest of the context's parts (secrets among them: it is only ever used under the
    cache's key)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def assemble(order: Iterable[str], found: Mapping[str, UserRows]) -> RealtimeRows:
    """The rows of the users in `order` (their keys), table by table, in that order."""
    rows = RealtimeRows()
    for user_key in order:
        endpoint, auth, aor, mailbox = found[user_key]
        if endpoint is not None:
            rows.ps_endpoints.append(endpoint)
        if auth is not None:
            rows.ps_auths.append(auth)
        if aor is not None:
            rows.ps_aors.append(aor)
        if mailbox is not None:
            rows.voicemail.append(mailbox)
    return rows
