"""cel.conf: channel event logging of LINKEDID_END only, when the call history is on.

LINKEDID_END says the last channel of a call is gone: the collecting service then knows
every leg of that call (a transfer's, a forward's) has its CDR, and assembles the call."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View


def _view(given: RenderInput) -> View:
    return {"enabled": given.site.call_history.enabled}


FILE = ConfigFile(
    name="cel.conf",
    applied_by=Reload("cel", "module reload cel", order=10),
    view=_view,
)
