"""pjsip_notify.conf: the SIP NOTIFY messages the PBX may send to phones: `check-sync`
(`Event: check-sync`), which tells a phone to fetch its configuration again; the handset
login's dialplan sends it (`PJSIPNotify(<contact>,check-sync)`) after assigning a device,
from the endpoint `NOTIFY_ENDPOINT` (pjsip.conf's `default_outbound_endpoint`)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules

#: the option `PJSIPNotify()` names, and the Event header it sends
CHECK_SYNC = "check-sync"


def _view(_: RenderInput) -> View:
    return {"notifies": {CHECK_SYNC: [("Event", CHECK_SYNC)]}}


FILE = ConfigFile(
    name="pjsip_notify.conf",
    applied_by=Reload("res_pjsip_notify.so", "module reload res_pjsip_notify.so", order=40),
    view=_view,
    modules=static_modules("res_pjsip_notify.so"),
)
