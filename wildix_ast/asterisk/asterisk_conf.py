"""asterisk.conf: where the instance keeps its files, and core options.

With several nodes (issue 22) the console's control socket is also given to the group of
the node's expiry follower (`CONSOLE_GROUP`, docs/scaling.md), which expires the other
nodes' changes through it; otherwise it stays the owner's (and root's) alone."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Directory, RenderInput, Restart, View

#: The group of the expiry follower's system user (`wildix-ast realtime follow`): the one
#: group besides Asterisk's own user that may use the console, and only with several nodes
#: (a group of its own: the asterisk group's members, the call history collector and the
#: fax service, do not get the console).
CONSOLE_GROUP = "wildix-ast-expiry"


def _view(given: RenderInput) -> View:
    paths = given.paths
    return {
        "directories": [Directory(key, path) for key, path in paths.directories()],
        "language": given.site.system.language_region.language,
        "console_group": CONSOLE_GROUP if given.site.system.realtime.nodes else "",
    }


FILE = ConfigFile(
    name="asterisk.conf",
    applied_by=Restart("asterisk.conf is read only at startup"),
    view=_view,
)
