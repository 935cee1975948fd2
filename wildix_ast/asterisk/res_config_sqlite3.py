"""res_config_sqlite3.conf (realtime mode on SQLite, issue 22): the realtime file Asterisk
reads. It is a file of its own beside the configuration (`REALTIME_SQLITE_FILE`), written
by apply alone: Asterisk never opens the project's store, which holds WEB password hashes
and every other secret."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View
from wildix_ast.asterisk.extconfig import CONNECTION
from wildix_ast.model.site import Site
from wildix_ast.model.system import RealtimeEngine

#: The realtime file's name, in Asterisk's configuration folder.
REALTIME_SQLITE_FILE = "wildix-realtime.sqlite3"


def _wanted(site: Site) -> bool:
    realtime = site.system.realtime
    return realtime.enabled and realtime.engine == RealtimeEngine.SQLITE


def _view(given: RenderInput) -> View:
    return {"connection": CONNECTION, "dbfile": str(given.paths.etc / REALTIME_SQLITE_FILE)}


FILE = ConfigFile(
    name="res_config_sqlite3.conf",
    applied_by=Restart("res_config_sqlite3 opens its databases when it loads"),
    view=_view,
    modules=lambda _site: ("res_config_sqlite3.so",),
    wanted=_wanted,
)
