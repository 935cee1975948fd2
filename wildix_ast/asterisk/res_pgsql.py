"""res_pgsql.conf (realtime mode on PostgreSQL, issue 22): the account Asterisk reads the
realtime tables with (`system.realtime`: host, port, database, username; its password is
generated and kept in the vault). That account may only SELECT the realtime tables."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View
from wildix_ast.model.site import Site
from wildix_ast.model.system import RealtimeEngine


def _wanted(site: Site) -> bool:
    realtime = site.system.realtime
    return realtime.enabled and realtime.engine == RealtimeEngine.POSTGRESQL


def _view(given: RenderInput) -> View:
    realtime = given.site.system.realtime
    return {"host": str(realtime.host), "port": realtime.port, "database": realtime.database,
            "username": realtime.username, "password": given.realtime_secret}


FILE = ConfigFile(
    name="res_pgsql.conf",
    applied_by=Restart("res_config_pgsql connects when it loads"),
    view=_view,
    modules=lambda _site: ("res_config_pgsql.so",),
    wanted=_wanted,
    secret=lambda _section, key, _op, value: (value, "") if key == "dbpass" else None,
)
