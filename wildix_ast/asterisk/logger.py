"""logger.conf: what Asterisk logs, and where."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules


def _view(given: RenderInput) -> View:
    return {"log_dir": given.paths.log}


FILE = ConfigFile(
    name="logger.conf",
    applied_by=Reload("logger", "logger reload", order=0),
    view=_view,
    # the `security` channel stays empty without it (failed logins, ACL refusals: what
    # SIP bans need)
    modules=static_modules("res_security_log.so"),
)
