"""manager.conf: the AMI, on loopback only, with wildix-ast's own account."""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View
from wildix_ast.errors import Problem, RenderError
from wildix_ast.passwords import password_problems

AMI_BIND = "127.0.0.1"


@dataclass(frozen=True)
class Account:
    username: str
    secret: str
    read: str
    write: str
    writetimeout: int


def _view(given: RenderInput) -> View:
    weak = password_problems(given.manager_secret)
    if weak:
        raise RenderError("cannot render: the manager secret breaks the password policy",
                          [Problem("manager_secret", "; ".join(weak))])
    manager = given.site.system.manager
    return {
        "manager_bind": AMI_BIND,
        "manager_port": manager.port,
        # What wildix-ast sends: Command (the CLI), CoreStatus and CoreShowChannels
        # (reporting), Ping. Not `system` nor `config`: both allow GetConfig (every SIP
        # password); not `originate`. Runtime services get accounts of their own. Reads
        # `user` too: the UserEvents the dialplan publishes (WildixPopup).
        "manager_accounts": [Account(
            username=manager.username, secret=given.manager_secret,
            read="system,reporting,user", write="command,reporting", writetimeout=5000)],
    }


FILE = ConfigFile(
    name="manager.conf",
    applied_by=Reload("manager", "manager reload", order=0),
    view=_view,
)
