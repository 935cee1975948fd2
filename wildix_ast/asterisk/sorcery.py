"""sorcery.conf (realtime mode, issue 22): where res_pjsip finds endpoints, auths and AORs.

Each type is looked up in pjsip.conf first (transports' neighbours: trunks, whose objects
stay in the file), then in a sorcery memory cache, then in its realtime table. The cache
keeps every object once read, without a lifetime: a call never waits on the database for a
user already seen, and a database that stops answering does not stop those users' calls.
Apply expires exactly the objects it changed (`sorcery memory cache expire`), so a changed
row is read again on its next use with no module reload. Sorcery's wizards are set when
res_pjsip loads: switching modes needs a restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View
from wildix_ast.errors import ApplyError
from wildix_ast.model.site import Site


class Wizard(NamedTuple):
    """One sorcery type read from pjsip.conf, then its cache, then its realtime table."""

    type: str
    table: str
    cache: str


#: The PJSIP objects of the users, their realtime tables and their caches' names (what
#: apply expires by name).
WIZARDS = (Wizard("endpoint", "ps_endpoints", "wildix-endpoints"),
           Wizard("auth", "ps_auths", "wildix-auths"),
           Wizard("aor", "ps_aors", "wildix-aors"))
CACHE_BY_TABLE = {w.table: w.cache for w in WIZARDS}
CACHES = frozenset(CACHE_BY_TABLE.values())
#: A cache entry's key as it goes into the console command `sorcery memory cache expire
#: CACHE KEY`: one word, no space, no line break, nothing a shell or the CLI reads.
CACHE_KEY = re.compile(r"[A-Za-z0-9_.+@-]{1,80}")


def expire_command(cache: str, key: str | None = None) -> str:
    """The console command that expires `key` from `cache` (None: the whole cache);
    refuses a cache or a key that could change the command."""
    if cache not in CACHES:
        raise ApplyError(f"refusing to expire from the unknown cache {cache!r}")
    if key is None:
        return f"sorcery memory cache expire {cache}"
    if not CACHE_KEY.fullmatch(key):
        raise ApplyError(f"refusing to expire the realtime object {key!r}")
    return f"sorcery memory cache expire {cache} {key}"


def cache_entries(rows: Iterable[str]) -> list[tuple[str, str]]:
    """The sorcery memory cache entries (cache, key) of realtime rows ("table/key");
    voicemail's rows have none (it reads its table on each use). Refuses a key that could
    break the console command."""
    entries: list[tuple[str, str]] = []
    for row in rows:
        table, _, key = row.partition("/")
        cache = CACHE_BY_TABLE.get(table)
        if cache is None:
            continue
        expire_command(cache, key)  # the check
        entries.append((cache, key))
    return entries


def realtime_enabled(site: Site) -> bool:
    return site.system.realtime.enabled


def _view(_given: RenderInput) -> View:
    return {"wizards": WIZARDS}


FILE = ConfigFile(
    name="sorcery.conf",
    applied_by=Restart("sorcery wizards are set when res_pjsip loads"),
    view=_view,
    modules=lambda _site: ("res_sorcery_realtime.so", "res_sorcery_memory_cache.so"),
    wanted=realtime_enabled,
)
