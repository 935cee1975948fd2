"""asterisk.conf: where the instance keeps its files, and core options.

The console's control socket is given to one group besides Asterisk's own user
(`CONSOLE_GROUP`): its members are the services that must run console commands without
being root, Mail2Fax's dialer (docs/fax.md) and, with several nodes, each node's expiry
follower (docs/scaling.md)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Directory, RenderInput, Restart, View

#: The one group besides Asterisk's own user that may use the console: a group of its own,
#: because the asterisk group's members (the call history collector, the fax service) must
#: not get the console, which has no classes (Asterisk's whole CLI).
CONSOLE_GROUP = "wildix-ast-console"


def _view(given: RenderInput) -> View:
    paths = given.paths
    return {
        "directories": [Directory(key, path) for key, path in paths.directories()],
        "language": given.site.system.language_region.language,
        "console_group": CONSOLE_GROUP,
    }


FILE = ConfigFile(
    name="asterisk.conf",
    applied_by=Restart("asterisk.conf is read only at startup"),
    view=_view,
)
