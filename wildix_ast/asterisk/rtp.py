"""rtp.conf: the RTP port range (WMS SIP-RTP)."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules


def _view(given: RenderInput) -> View:
    sip = given.site.system.sip_rtp
    return {"rtp_start": sip.rtp_start, "rtp_end": sip.rtp_end}


FILE = ConfigFile(
    name="rtp.conf",
    applied_by=Reload("res_rtp_asterisk.so", "module reload res_rtp_asterisk.so", order=10),
    view=_view,
    modules=static_modules("res_rtp_asterisk.so"),
)
