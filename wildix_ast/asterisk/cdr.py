"""cdr.conf: call detail records on, written at once (no batch) when the call history is on.

Every finished CDR goes to cdr_custom (cdr_custom.conf), which appends it to a local file the
call history's collecting service reads: batch mode would keep records in memory, lost on a
crash or a SIGKILL. Unanswered and congested attempts are logged too: the collector needs
every leg to say how a call ended (no answer, busy, failed)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View


def _view(given: RenderInput) -> View:
    return {"enabled": given.site.call_history.enabled}


FILE = ConfigFile(
    name="cdr.conf",
    applied_by=Reload("cdr", "module reload cdr", order=10),
    view=_view,
)
