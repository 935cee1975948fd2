"""Rendering: each generated file's view (wildix_ast/asterisk/) laid out by its Jinja2 template.

Python builds every value a template prints (the `view` of each `ConfigFile`), already in the
form Asterisk wants; the templates in `templates/asterisk/<file>.j2` only lay those values out
in Asterisk syntax. An engineer overrides any template by putting a file of the same name in a
folder passed as `templates` (`wildix-ast render --templates DIR`). A template found only in
that folder is rendered too; it receives every built-in file's view merged (`header`,
`endpoints`, `mailboxes`, `calls`...), since it has no module of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import jinja2.bccache

from wildix_ast.asterisk import registry
from wildix_ast.asterisk.base import HEADER, RenderInput
from wildix_ast.asterisk.paths import AsteriskPaths
from wildix_ast.errors import Problem, RenderError
from wildix_ast.files import write_atomic_all
from wildix_ast.model.site import Site
from wildix_ast.sounds.audio import SoundLibrary
from wildix_ast.store.realtime import RealtimeRows, realtime_rows
from wildix_ast.templates import builtin_folder, checked_folders

if TYPE_CHECKING:
    from wildix_ast.asterisk.row_cache import RowCache, UserBlocks, UserRows
    from wildix_ast.conf import Section
    from wildix_ast.model.users import User

TEMPLATES_ENV = "WILDIX_AST_TEMPLATES"
TEMPLATE_SUFFIX = ".j2"


def builtin_templates_dir() -> Path:
    """$WILDIX_AST_TEMPLATES, else the checkout's or the wheel's `templates/asterisk`."""
    return builtin_folder(TEMPLATES_ENV, "asterisk")


def environment(templates: Path | None = None) -> jinja2.Environment:
    """The Jinja2 environment: `templates` (if any) first, then the built-in templates."""
    return _environment(*checked_folders(templates, builtin_templates_dir(), TEMPLATES_ENV))


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept across processes (compiling them took a fifth of a whole
    `render`). Jinja2 checks each entry against the template's source and its own and
    Python's versions; a cache that cannot be read or written is only a slower render."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        from wildix_ast.cache import writable

        if not writable():  # a dry run writes nothing anywhere
            return
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    from wildix_ast.cache import cache_dir, writable

    folder = cache_dir() / "jinja"
    if not writable():
        return _BytecodeCache(str(folder)) if folder.is_dir() else None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return _BytecodeCache(str(folder))


@functools.lru_cache(maxsize=16)
def _environment(override: str | None, builtin: str) -> jinja2.Environment:
    # Cached: compiled templates are reused; Jinja2 still reloads a template whose file
    # changed (auto_reload).
    loaders: list[jinja2.BaseLoader] = []
    if override is not None:
        loaders.append(jinja2.FileSystemLoader(override))
    loaders.append(jinja2.FileSystemLoader(builtin))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
        autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        bytecode_cache=_bytecode_cache())


def _render_one(env: jinja2.Environment, name: str, context: dict[str, object]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"template {name} not found in the override folder nor in "
                          f"{builtin_templates_dir()}") from error
    except jinja2.TemplateError as error:
        where = getattr(error, "lineno", None)
        location = f"{name}:{where}" if where else name
        raise RenderError(f"template {name} failed: {error}",
                          [Problem(location, str(error))]) from error


def _extra_templates(templates: Path | None) -> list[str]:
    """Templates found only in the override folder."""
    if templates is None:
        return []
    known = {f.template for f in registry()}
    return sorted(p.name for p in templates.iterdir()
                  if p.name.endswith(TEMPLATE_SUFFIX) and p.is_file()
                  and not p.name.startswith(("_", ".")) and p.name not in known)


def _derive_rows(env: jinja2.Environment, given: RenderInput,
                 users: list[User]) -> list[UserRows]:
    """`users`' rows: what pjsip.conf and voicemail.conf say of them in file mode (the same
    views and templates, overrides included), parsed. One derivation: a user's phone and
    mailbox are never described twice. Rendered in a site of these users and the mailboxes
    they share (a shared mailbox shows on the phone only if it exists)."""
    from wildix_ast.store.realtime import user_rows

    site = given.site
    if len(users) < len(site.users):
        wanted = {u.extension for u in users}
        shared = {u.preferences.shared_voicemail for u in users} - wanted
        chosen = [u for u in site.users if u.extension in wanted or u.extension in shared]
        given = dataclasses.replace(given, site=site.model_copy(update={"users": chosen}))
    return user_rows(users, *_whole_files(env, given))


def _rows_context(env: jinja2.Environment, given: RenderInput) -> str:
    """What every user's rows depend on besides the user (`row_cache`)."""
    from wildix_ast.asterisk.row_cache import code_fingerprint, context_digest

    sources = []
    for name in ("pjsip.conf.j2", "voicemail.conf.j2", ROWS_TEMPLATE):
        assert env.loader is not None
        sources.append(env.loader.get_source(env, name)[0])
    # every other input of the render, by field: an input added later cannot be forgotten
    # here (the users' own PINs are in each user's key; the rows are what is made)
    inputs = [_input_text(getattr(given, f.name)) for f in dataclasses.fields(given)
              if f.name not in ("site", "voicemail_pins", "realtime_rows")]
    return context_digest([given.site.model_dump_json(exclude={"users"}), *inputs,
                           *sources, code_fingerprint()])


def _input_text(value: object) -> str:
    """A render input as stable text (mappings in key order)."""
    if isinstance(value, Mapping):
        return repr(sorted(value.items(), key=lambda item: repr(item[0])))
    return repr(value)


def _realtime_rows(env: jinja2.Environment, given: RenderInput, *,
                   every_row: bool = False) -> tuple[RealtimeRows, str | None]:
    """The users' rows of the realtime tables (`_derive_rows`): those of users whose
    entry, context and PIN are unchanged since the last render come from the row cache
    (`row_cache`); only the others are rendered and parsed. With them, wildix-realtime.conf
    joined from each user's kept blocks (`_joined_rows_file`; None: render it whole); when
    it is joined, the rows are left out (empty) unless `every_row` (a template of the
    override folder's own gets every view)."""
    from wildix_ast.asterisk.row_cache import assemble, open_cache

    users = list(given.site.users)
    cache = open_cache(_rows_context(env, given)) if users else None
    if cache is None:
        return realtime_rows(users, *_whole_files(env, given)), None
    from wildix_ast.asterisk.names import has_mailbox

    boxes = {u.extension for u in users if has_mailbox(u)}
    keys = []
    for user in users:
        shared = user.preferences.shared_voicemail
        keys.append(cache.user_key(
            user.__pydantic_serializer__.to_json(user),
            given.voicemail_pins.get(user.extension, ""),
            "" if shared is None else f"{shared}:{shared in boxes}"))
    missed = [(k, u) for k, u in zip(keys, users, strict=True) if not cache.has(k)]
    derived: dict[str, UserRows] = {}
    if missed:
        made = _derive_rows(env, given, [u for _, u in missed])
        for (user_key, _), rows in zip(missed, made, strict=True):
            derived[user_key] = rows
            cache.put(user_key, rows)

    def rows_of(user_key: str) -> UserRows:
        found = derived.get(user_key)
        return found if found is not None else cache.rows_of(user_key)

    text = _joined_rows_file(env, given, cache, keys, rows_of)
    cache.save()
    if text is not None and not every_row:
        return RealtimeRows(), text
    return assemble(keys, {k: rows_of(k) for k in keys}), text


ROWS_TEMPLATE = "wildix-realtime.conf.j2"


def _joined_rows_file(env: jinja2.Environment, given: RenderInput, cache: RowCache,
                      keys: list[str], rows_of: Callable[[str], UserRows]) -> str | None:
    """wildix-realtime.conf as the head the template writes without rows, then each
    table's rows, user by user, each row's section as the template laid it out when that
    user's rows were made (kept in the row cache beside them): a one-user change lays out
    one user's sections, not 40,000. Only with the built-in template, whose rows are laid
    out one section after the other, each from its row alone (an override may do anything
    with them: it is rendered whole); None: render it whole."""
    if not _builtin_template(env, ROWS_TEMPLATE):
        return None
    head = _rows_text(env, given, RealtimeRows())
    missing = [k for k in dict.fromkeys(keys) if cache.blocks_of(k) is None]
    if missing:
        made = _user_blocks(env, given, head, [rows_of(k) for k in missing])
        if made is None:
            return None
        for user_key, blocks in zip(missing, made, strict=True):
            cache.put_blocks(user_key, blocks)
    kept = [cache.blocks_of(k) for k in keys]
    parts = [head]
    for table in range(4):
        parts += [blocks[table] for blocks in kept if blocks is not None]
    return "".join(parts)


def _builtin_template(env: jinja2.Environment, name: str) -> bool:
    """Whether `env` finds the built-in `name` (no override of it)."""
    assert env.loader is not None
    try:
        _, filename, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        return False
    return filename is not None and Path(filename) == builtin_templates_dir() / name


def _rows_text(env: jinja2.Environment, given: RenderInput, rows: RealtimeRows) -> str:
    from wildix_ast.asterisk import by_name

    rows_file = by_name()["wildix-realtime.conf"]
    view = rows_file.view(dataclasses.replace(given, realtime_rows=rows))
    return _render_one(env, rows_file.template, {"header": HEADER, **view})


def _user_blocks(env: jinja2.Environment, given: RenderInput, head: str,
                 users: list[UserRows]) -> list[UserBlocks] | None:
    """Each of `users`' rows as its section of wildix-realtime.conf: the users' rows
    rendered at once after `head`, cut before each section (a value holds no line break:
    the view refuses one). None when the text is not laid out so."""
    from wildix_ast.asterisk.row_cache import assemble

    order = [str(i) for i in range(len(users))]
    text = _rows_text(env, given, assemble(order, dict(zip(order, users, strict=True))))
    if not text.startswith(head):
        return None
    pieces = text[len(head):].split("\n[")
    wanted = sum(row is not None for rows in users for row in rows)
    if pieces[0] != "" or len(pieces) - 1 != wanted:
        return None
    sections = iter("\n[" + piece for piece in pieces[1:])
    made: list[list[str]] = [["", "", "", ""] for _ in users]
    for table in range(4):
        for i, rows in enumerate(users):
            if rows[table] is not None:
                made[i][table] = next(sections)
    return [(a, b, c, d) for a, b, c, d in made]


def _whole_files(env: jinja2.Environment,
                 given: RenderInput) -> tuple[list[Section], list[Section], str]:
    """pjsip.conf and voicemail.conf with every user, parsed (no cache)."""
    from wildix_ast.asterisk import by_name
    from wildix_ast.asterisk.names import VOICEMAIL_CONTEXT
    from wildix_ast.conf import sections

    files = by_name()
    rendered = {name: sections(_render_one(env, files[name].template,
                                           {"header": HEADER, **files[name].view(given)}))
                for name in ("pjsip.conf", "voicemail.conf")}
    return rendered["pjsip.conf"], rendered["voicemail.conf"], VOICEMAIL_CONTEXT


def render_files(given: RenderInput, templates: Path | None = None) -> dict[str, str]:
    """File name -> content of every generated file, sorted by name. The same input gives
    byte-identical output."""
    env = environment(templates)
    wanted = [f for f in registry() if f.wanted(given.site)]
    extra = _extra_templates(templates)
    joined: dict[str, str] = {}
    if given.site.system.realtime.enabled and given.realtime_rows is None:
        rows, rows_text = _realtime_rows(env, given, every_row=bool(extra))
        given = dataclasses.replace(given, realtime_rows=rows)
        if rows_text is not None and not extra:  # an extra template needs every view
            joined["wildix-realtime.conf"] = rows_text
    views = {f.name: {"header": HEADER, **f.view(given)} for f in wanted
             if f.name not in joined}
    files = {f.name: joined[f.name] if f.name in joined
             else _render_one(env, f.template, views[f.name]) for f in wanted}
    if extra:
        merged: dict[str, object] = {}
        for view in views.values():
            merged.update(view)
        for name in extra:
            files[name.removesuffix(TEMPLATE_SUFFIX)] = _render_one(env, name, merged)
    return dict(sorted(files.items()))


def render_site(site: Site, *, manager_secret: str, paths: AsteriskPaths | None = None,
                templates: Path | None = None,
                voicemail_pins: Mapping[str, str] | None = None,
                sounds: SoundLibrary | None = None,
                runtime_secret: str = "", fastagi_key: str = "",
                realtime_secret: str = "",
                node_pair_secrets: Mapping[tuple[str, str], str] | None = None,
                hot_desks: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Every generated file for `site`. Every user with a phone must have its `sip_password`
    (use `secrets_vault.with_secrets` first), or RenderError names them. `voicemail_pins`
    come from the vault (`secrets_vault.voicemail_pins`); without them each PIN is derived
    from the manager secret."""
    given = RenderInput(site=site, manager_secret=manager_secret,
                        paths=paths if paths is not None else AsteriskPaths(),
                        voicemail_pins=dict(voicemail_pins or {}),
                        sound_digests={k: a.digest for k, a in (sounds or {}).items()},
                        runtime_secret=runtime_secret, fastagi_key=fastagi_key,
                        realtime_secret=realtime_secret,
                        node_pair_secrets=dict(node_pair_secrets or {}), hot_desks=hot_desks)
    return render_files(given, templates)


def write_rendered(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write each file atomically into `out_dir` (mode 0640: the files hold secrets).
    Returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = dict(sorted(files.items()))
    for name in ordered:
        if "/" in name or name.startswith("."):
            raise RenderError(f"refusing to write {name!r} outside {out_dir}")
    write_atomic_all(out_dir, ordered)
    return [out_dir / name for name in ordered]
