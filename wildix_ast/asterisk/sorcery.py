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

from typing import NamedTuple

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View
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
