"""musiconhold.conf: hold music classes."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules


def _view(given: RenderInput) -> View:
    return {"moh_dir": given.paths.data / "moh"}


FILE = ConfigFile(
    name="musiconhold.conf",
    applied_by=Reload("res_musiconhold.so", "module reload res_musiconhold.so", order=20),
    view=_view,
    modules=static_modules("res_musiconhold.so"),
)
