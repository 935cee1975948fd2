"""cdr_custom.conf: every CDR appended as one JSON line to the call history's local file
(`calls.call_record`), in Asterisk's own log folder. Nothing when the call history is off."""

from __future__ import annotations

from collections.abc import Iterable

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View
from wildix_ast.calls.call_record import CDR_FIELDS, cdr_path
from wildix_ast.model.site import Site


def _view(given: RenderInput) -> View:
    return {"enabled": given.site.call_history.enabled,
            "path": str(cdr_path(given.paths.log)), "fields": ",".join(CDR_FIELDS)}


def _modules(site: Site) -> Iterable[str]:
    return ("res_cdrel_custom.so", "cdr_custom.so", "func_cdr.so") \
        if site.call_history.enabled else ()


FILE = ConfigFile(
    name="cdr_custom.conf",
    applied_by=Reload("cdr_custom.so", "module reload cdr_custom.so", order=12),
    view=_view,
    modules=_modules,
)
