"""asterisk.conf: where the instance keeps its files, and core options."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Directory, RenderInput, Restart, View


def _view(given: RenderInput) -> View:
    paths = given.paths
    return {
        "directories": [Directory(key, path) for key, path in paths.directories()],
        "language": given.site.system.language_region.language,
    }


FILE = ConfigFile(
    name="asterisk.conf",
    applied_by=Restart("asterisk.conf is read only at startup"),
    view=_view,
)
