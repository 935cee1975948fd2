"""manager.conf: the AMI, on loopback only, with wildix-ast's own account (apply) and the
AMI service's account (`wildix-ast runtime serve`, `status`, `test-call`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.errors import Problem, RenderError
from wildix_ast.model.passwords import password_problems

AMI_BIND = "127.0.0.1"

#: The AMI service's classes. Events: `system` (FullyBooted, ContactStatus), `call`
#: (channels, device states), `dialplan` (Newexten: the per-call log), `security` (failed
#: authentications: bans). Actions: `reporting` (DeviceStateList, CoreShowChannels). Not
#: `originate` (any channel: a trunk past every class check; `test-call` originates through
#: the root-only console into a guarded context), `command`, `system` nor `config`: no CLI,
#: no Reload, no GetConfig (every SIP password); bans are enforced by the firewall.
RUNTIME_READ = "system,call,dialplan,security,user"
RUNTIME_WRITE = "reporting"


def runtime_account(manager_username: str) -> str:
    """The AMI service's account name, next to wildix-ast's own `manager_username`."""
    return f"{manager_username}-runtime"


def runtime_secret(given: RenderInput) -> str:
    """The vault's secret for the account; without one (a bare render_site), a value derived
    from the manager secret (it does not reveal it)."""
    if given.runtime_secret:
        return given.runtime_secret
    return hmac.new(given.manager_secret.encode(), b"ami-runtime-account",
                    hashlib.sha256).hexdigest()


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
        # What wildix-ast sends: CoreStatus, CoreShowChannels, ShowDialPlan (reporting),
        # Ping. Not `command` (any CLI command: `pjsip show auth`, a `channel originate` of
        # a program), `system` nor `config` (GetConfig: every SIP password), `originate`
        # (any channel): apply reloads and verifies through the root-only console
        # (`asterisk_cli`). Reads `user` too: the UserEvents the dialplan publishes.
        "manager_accounts": [Account(
            username=manager.username, secret=given.manager_secret,
            read="system,reporting,user", write="reporting", writetimeout=5000),
            Account(username=runtime_account(manager.username), secret=runtime_secret(given),
                    read=RUNTIME_READ, write=RUNTIME_WRITE, writetimeout=5000)],
    }


FILE = ConfigFile(
    name="manager.conf",
    applied_by=Reload("manager", "manager reload", order=0),
    view=_view,
    # DeviceStateList and DeviceStateChange: the AMI service's green/gray phones
    modules=static_modules("res_manager_devicestate.so"),
)
