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
#: Milliseconds a read waits for a lock before it fails (res_config_sqlite3's default is
#: 1000). A cached user's every SIP request makes one read that misses (`user@domain`,
#: see docs/realtime.md): while the file is locked, that wait is paid by each request and
#: holds a PJSIP thread, so a call's INVITE and its retransmissions queued up behind each
#: other. apply's write is one short transaction (milliseconds), well under this.
BUSY_TIMEOUT_MS = 50


def _wanted(site: Site) -> bool:
    realtime = site.system.realtime
    return realtime.enabled and realtime.engine == RealtimeEngine.SQLITE


def _view(given: RenderInput) -> View:
    return {"connection": CONNECTION, "dbfile": str(given.paths.etc / REALTIME_SQLITE_FILE),
            "busy_timeout": BUSY_TIMEOUT_MS}


FILE = ConfigFile(
    name="res_config_sqlite3.conf",
    applied_by=Restart("res_config_sqlite3 opens its databases when it loads"),
    view=_view,
    modules=lambda _site: ("res_config_sqlite3.so",),
    wanted=_wanted,
)
