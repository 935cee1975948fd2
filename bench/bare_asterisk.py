"""The baseline of bench/load.py: Asterisk 22 in the same lab root filesystem with a minimal
hand-written configuration (two PJSIP endpoints, one dialplan line), not wildix-ast's."""

from __future__ import annotations

from wildix_ast.lab.instance import Lab

#: What a PJSIP call with media through Asterisk needs, nothing else.
MODULES = (
    "res_timing_timerfd.so", "pbx_config.so", "res_sorcery_config.so",
    "res_sorcery_memory.so", "res_sorcery_astdb.so", "res_pjproject.so", "res_pjsip.so",
    "res_pjsip_session.so", "res_pjsip_pubsub.so", "res_pjsip_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so", "res_pjsip_registrar.so",
    "res_pjsip_sdp_rtp.so", "res_pjsip_nat.so", "res_pjsip_caller_id.so", "chan_pjsip.so",
    "res_rtp_asterisk.so", "bridge_simple.so", "bridge_native_rtp.so", "codec_ulaw.so",
    "codec_alaw.so", "app_dial.so",
)


def _endpoint(ext: str, password: str) -> str:
    return f"""
[{ext}]
type = endpoint
context = bare
disallow = all
allow = ulaw,alaw
auth = {ext}
aors = {ext}
direct_media = no
rtp_symmetric = yes
rewrite_contact = yes

[{ext}]
type = auth
auth_type = userpass
username = {ext}
password = {password}

[{ext}]
type = aor
max_contacts = 1
remove_existing = yes
"""


def write_bare_config(lab: Lab, passwords: dict[str, str], callee: str) -> None:
    """asterisk.conf, modules.conf, logger.conf, rtp.conf, pjsip.conf and extensions.conf
    into `lab.etc_dir`: the endpoints of `passwords` (extension -> password), and calls to
    `callee` dialled straight to its phone."""
    paths, ports = lab.paths, lab.ports
    files = {
        "asterisk.conf": "[directories]\n" + "".join(f"{key} => {path}\n"
                                                   for key, path in paths.directories()),
        "modules.conf": "[modules]\nautoload = no\n" + "".join(f"load = {m}\n" for m in MODULES),
        "logger.conf": "[logfiles]\nmessages.log => notice,warning,error\n",
        "rtp.conf": f"[general]\nrtpstart = {ports.rtp_start}\nrtpend = {ports.rtp_end}\n",
        "pjsip.conf": f"[udp]\ntype = transport\nprotocol = udp\nbind = {ports.host}:{ports.sip}\n"
                      + "".join(_endpoint(ext, pw) for ext, pw in passwords.items()),
        "extensions.conf": f"[bare]\nexten => {callee},1,Dial(PJSIP/{callee})\n",
    }
    for name, text in files.items():
        (lab.etc_dir / name).write_text(text, encoding="utf-8")
