"""cel_custom.conf: every LINKEDID_END appended as one JSON line to the call history's
local end-of-call file (`calls.call_record`). Nothing when the call history is off."""

from __future__ import annotations

from collections.abc import Iterable

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View
from wildix_ast.calls.call_record import CEL_FIELDS, cel_path
from wildix_ast.model.site import Site


def _view(given: RenderInput) -> View:
    return {"enabled": given.site.call_history.enabled,
            "path": str(cel_path(given.paths.log)), "fields": ",".join(CEL_FIELDS)}


def _modules(site: Site) -> Iterable[str]:
    return ("res_cdrel_custom.so", "cel_custom.so") if site.call_history.enabled else ()


FILE = ConfigFile(
    name="cel_custom.conf",
    applied_by=Reload("cel_custom.so", "module reload cel_custom.so", order=12),
    view=_view,
    modules=_modules,
)
