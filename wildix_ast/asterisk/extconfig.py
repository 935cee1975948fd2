"""extconfig.conf (realtime mode, issue 22): the realtime families Asterisk reads from
database tables, all through one engine (res_config_sqlite3 or res_config_pgsql) and one
connection: the users' PJSIP objects and their mailboxes."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, RenderInput, Restart, View
from wildix_ast.asterisk.sorcery import WIZARDS, realtime_enabled
from wildix_ast.model.system import RealtimeEngine

#: extconfig's driver name of each engine, and the connection's name in its own file
DRIVERS = {RealtimeEngine.SQLITE: "sqlite3", RealtimeEngine.POSTGRESQL: "pgsql"}
CONNECTION = "asterisk"
VOICEMAIL_TABLE = "voicemail"


def _view(given: RenderInput) -> View:
    driver = DRIVERS[given.site.system.realtime.engine]
    tables = [w.table for w in WIZARDS] + [VOICEMAIL_TABLE]
    return {"families": [(table, f"{driver},{CONNECTION},{table}") for table in tables]}


FILE = ConfigFile(
    name="extconfig.conf",
    applied_by=Restart("realtime families are bound when the modules reading them load"),
    view=_view,
    wanted=realtime_enabled,
)
