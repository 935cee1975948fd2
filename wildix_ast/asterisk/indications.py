"""indications.conf: the tones of the site's country (WMS Language and region)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View


def _view(given: RenderInput) -> View:
    return {"tone_zone": given.site.system.language_region.tone_zone}


FILE = ConfigFile(
    name="indications.conf",
    applied_by=Reload("indications", "module reload indications", order=10),
    view=_view,
)
