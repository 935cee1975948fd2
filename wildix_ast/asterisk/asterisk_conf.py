"""asterisk.conf: where the instance keeps its files, and core options."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Directory, RenderInput, Restart, View


def _view(given: RenderInput) -> View:
    paths = given.paths
    return {
        "directories": [Directory(key, path) for key, path in (
            ("astetcdir", paths.etc), ("astmoddir", paths.modules),
            ("astvarlibdir", paths.var_lib), ("astdbdir", paths.db), ("astkeydir", paths.key),
            ("astdatadir", paths.data), ("astagidir", paths.agi),
            ("astspooldir", paths.spool), ("astrundir", paths.run), ("astlogdir", paths.log),
            ("astcachedir", paths.cache))],
        "language": given.site.system.language_region.language,
    }


FILE = ConfigFile(
    name="asterisk.conf",
    applied_by=Restart("asterisk.conf is read only at startup"),
    view=_view,
)
