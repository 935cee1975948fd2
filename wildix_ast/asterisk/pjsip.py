"""pjsip.conf: transports, one endpoint + auth + AOR per user with a phone (WMS SIP-RTP,
Users), and per trunk an endpoint + AOR with a registration + auth or an identify (Trunks).

Codecs: every endpoint allows the LAN codecs, then the remote codecs not already listed, all
of them codecs Asterisk can translate (`system.NOT_CARRIED` are refused by the model);
choosing codecs per network (LAN vs remote phone) will come with the AGI service.

Phones: RTP binds to the site's sound_files address (else its bind address): bound to the
wildcard, Asterisk resolves the host name for every RTP instance (ast_find_ourip when it
turns RTCP on), DNS queries per call on a host whose name is not in /etc/hosts. Every phone
is qualified (presence, NAT pinholes), a call without RTP ends after `rtp_timeout`, and
with a TLS transport every endpoint gets SDES-SRTP as its ACL group (else the site) says:
optional (offered, a call without it carried) or required (a call without it refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from wildix_ast.asterisk.base import ConfigFile, ObjectKinds, Reload, RenderInput, View
from wildix_ast.asterisk.names import (
    FROM_NODES_CONTEXT,
    HOT_DESK_CONTEXT,
    NO_CALLS_CONTEXT,
    NOTIFY_ENDPOINT,
    has_mailbox,
    local_node,
    node_endpoint,
    procedure_context,
    subscribed_mailboxes,
    tls_gate_context,
    transfer_context,
)
from wildix_ast.asterisk.outgoing import pjsip_trunks
from wildix_ast.calls import variables as v
from wildix_ast.calls.handset_login import hot_desk_endpoint
from wildix_ast.errors import Problem, RenderError
from wildix_ast.model.common import Srtp
from wildix_ast.model.passwords import password_problems
from wildix_ast.model.site import Site
from wildix_ast.model.system import Codec
from wildix_ast.model.trunks import FAX_CODECS
from wildix_ast.model.users import UserType

if TYPE_CHECKING:
    from wildix_ast.conf import Section

_STACK = (
    "res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
    "res_pjproject.so", "res_pjsip.so", "res_pjsip_session.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so", "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_registrar.so", "res_pjsip_outbound_registration.so", "res_pjsip_sdp_rtp.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_nat.so", "res_pjsip_dtmf_info.so", "res_pjsip_rfc3326.so",
    "res_pjsip_diversion.so", "res_pjsip_refer.so", "res_pjsip_path.so",
    "res_pjsip_pubsub.so", "res_pjsip_mwi.so", "res_pjsip_mwi_body_generator.so",
    "res_pjsip_exten_state.so", "res_pjsip_outbound_publish.so",
    "res_pjsip_pidf_body_generator.so",
    "res_pjsip_dialog_info_body_generator.so", "res_pjsip_send_to_voicemail.so",
    "res_pjsip_header_funcs.so", "res_pjsip_logger.so", "res_pjsip_t38.so",
    "chan_pjsip.so", "func_pjsip_endpoint.so", "func_pjsip_aor.so", "func_pjsip_contact.so",
    # SDES-SRTP for phones on the TLS transport
    "res_srtp.so",
)

# Modules per configured codec (each has a translator: Asterisk can carry it).
_CODEC_MODULES: dict[Codec, tuple[str, ...]] = {
    Codec.ULAW: ("codec_ulaw.so",),
    Codec.ALAW: ("codec_alaw.so",),
    Codec.G722: ("codec_g722.so",),
    Codec.OPUS: ("codec_opus_open_source.so", "res_format_attr_opus.so",
                 "format_ogg_opus_open_source.so"),
    Codec.GSM: ("codec_gsm.so", "format_gsm.so"),
    Codec.G726: ("codec_g726.so", "format_g726.so"),
    Codec.SPEEX: ("codec_speex.so",),
}

_TYPES = {"endpoint", "aor", "auth", "transport", "identify", "registration", "contact",
          "domain_alias", "global", "system", "acl", "outbound-publish",
          "inbound-publishment", "asterisk-publication", "resource_list", "phoneprov"}
_REFERENCES = (("aors", "aor"), ("auth", "auth"), ("outbound_auth", "auth"),
               ("transport", "transport"), ("endpoint", "endpoint"))


#: The TLS transport's protocol method. pjproject derives the protocols it enables from it:
#: `tlsv1_2` would enable TLS 1.2 alone (TLS 1.3 refused); `sslv23` enables every version
#: the TLS library allows, and the cipher list below leaves TLS 1.0 and 1.1 with nothing to
#: negotiate (they have no AEAD cipher), so the transport speaks TLS 1.2 and 1.3 only.
TLS_METHOD = "sslv23"

#: AEAD ciphers with forward secrecy only (ECDHE or DHE key exchange; AES-GCM or
#: ChaCha20-Poly1305), by the names `pjsip list ciphers` gives in the lab's Asterisk 22:
#: no static RSA, no CBC, no SHA-1 MAC, no CCM/ARIA/Camellia (scanners flag them as
#: non-standard). The three TLS 1.3 suites, listed too, are all AEAD with (EC)DHE by
#: construction.
TLS_CIPHERS = (
    "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305", "DHE-RSA-AES128-GCM-SHA256",
)


@dataclass(frozen=True)
class Transport:
    name: str
    protocol: str
    bind: str
    local_nets: list[str]
    external_address: str | None
    #: TLS only: certificate and private key files as the Asterisk host sees them
    cert_file: str | None = None
    priv_key_file: str | None = None
    method: str = TLS_METHOD
    ciphers: str = ",".join(TLS_CIPHERS)


#: the caller name of a hot-desk endpoint (its number is the device's MAC)
HOT_DESK_CALLER = "Unassigned phone"


class Endpoint(NamedTuple):
    """A user's phone: its endpoint, auth and AOR. A named tuple, immutable like the other
    views' dataclasses but built in a quarter of the time (one per user)."""

    name: str
    auth: str
    username: str
    password: str
    aor: str
    callerid: str
    language: str
    context: str
    codecs: str
    #: `user@context` (then a shared mailbox), or empty for users without a mailbox
    mailbox: str
    #: the address RTP binds to and announces, None for the wildcard
    media_address: str | None
    rtp_timeout: int
    rtp_hold_timeout: int
    session_expires: int
    #: SDES-SRTP: None (off, or no TLS transport), "yes" (optional: a call without it is
    #: carried) or "no" (required: refused) as `media_encryption_optimistic` says it
    srtp_optimistic: str | None
    #: a TLS phone (`tls_phone_groups`): Asterisk reaches it over TLS only, and its calls
    #: enter this context (the TLS gate) first; hints stay in its procedure's context
    subscribe_context: str | None
    #: a LAN phone on a site with TLS: the only networks it may use (`permit`, after a
    #: `deny` of everything: Asterisk refuses anyone else, REGISTER and INVITE alike, with
    #: a 401 like a wrong password, and logs FailedACL)
    permit: str | None
    #: a fax user's ATA: G.711 codecs only and T.38 accepted
    fax: bool
    variables: list[str]
    """`set_var` lines: the ACL group and office DID the dialplan reads for outgoing calls."""


def codecs(site: Site) -> list[Codec]:
    sip = site.system.sip_rtp
    ordered: list[Codec] = []
    for codec in [*sip.lan_codecs, *sip.remote_codecs]:
        if codec not in ordered:
            ordered.append(codec)
    return ordered


def tls_phone_groups(site: Site) -> frozenset[str]:
    """The ACL groups whose phones are TLS phones: SRTP (optional or required, the group's
    else the site's) on a site with TLS. SDES keys travel in the SDP, and Asterisk 22 cannot
    tie an endpoint to a transport for what it receives (the endpoint's `transport` is for
    what it sends), so a phone with SRTP uses TLS only: Asterisk sends to it over TLS only,
    and the dialplan's TLS gate refuses its calls over UDP or TCP before any SDP answer.
    The other phones are LAN phones, held to lan_networks by an ACL once TLS is on."""
    sip = site.system.sip_rtp
    if not sip.tls:
        return frozenset()
    return frozenset(g.name for g in site.groups if (g.srtp or sip.srtp) is not Srtp.OFF)


def _srtp(tls: bool, mode: Srtp) -> str | None:
    """`media_encryption_optimistic` for a phone of this SRTP mode; None: no SRTP (no TLS
    transport: the keys would travel in clear)."""
    if not tls or mode is Srtp.OFF:
        return None
    return "no" if mode is Srtp.REQUIRED else "yes"


def _view(given: RenderInput) -> View:
    site = given.site
    sip = site.system.sip_rtp
    missing = [Problem(f"users[{i}].sip_password",
                       f"extension {u.extension} has a phone but no SIP password; fill the "
                       "generated ones first (secrets_vault.with_secrets)")
               for i, u in enumerate(site.users) if u.type.has_phone and u.sip_password is None]
    if missing:
        names = ", ".join(p.location for p in missing)
        raise RenderError(f"cannot render: missing SIP password for {names}", missing)
    allow = ",".join(str(c) for c in codecs(site))
    # a fax machine's tones survive G.711 only: the site's G.711 codecs, else both
    fax_allow = ",".join(c for c in allow.split(",") if c in FAX_CODECS) or ",".join(FAX_CODECS)
    external = str(sip.external_address) if sip.external_address is not None else None
    bind = f"{sip.bind_address}:{sip.sip_port}"
    nets = [str(n) for n in sip.lan_networks]
    transports = [Transport(f"transport-{proto}", proto, bind, nets, external)
                  for proto in ("udp", "tcp")]
    if sip.tls_certificate is not None:
        transports.append(Transport("transport-tls", "tls", f"{sip.bind_address}:{sip.tls_port}",
                                    nets, external, sip.tls_certificate, sip.tls_private_key))
    rtp_address = sip.rtp_address
    default_language = site.system.language_region.language
    boxes = {u.extension for u in site.users if has_mailbox(u)}
    # the same for every endpoint: read once, not once per user
    media_address = None if rtp_address is None else str(rtp_address)
    rtp_timeout, rtp_hold_timeout = sip.rtp_timeout, sip.rtp_hold_timeout
    session_expires = sip.session_expires
    srtp = {g.name: _srtp(sip.tls, g.srtp or sip.srtp) for g in site.groups}
    tls_groups = tls_phone_groups(site)
    lan_only = ",".join(nets) if sip.tls else None
    endpoints = [
        Endpoint(name=u.extension, auth=f"{u.extension}-auth", username=u.extension,
                 password=u.sip_password or "", aor=u.extension,
                 callerid=f'"{u.name}" <{u.extension}>',
                 language=u.language or default_language,
                 context=tls_gate_context(u.dialplan) if u.group in tls_groups
                 else procedure_context(u.dialplan),
                 codecs=fax_allow if u.type is UserType.FAX else allow,
                 mailbox=subscribed_mailboxes(u, boxes), media_address=media_address,
                 rtp_timeout=rtp_timeout, rtp_hold_timeout=rtp_hold_timeout,
                 session_expires=session_expires, srtp_optimistic=srtp.get(u.group),
                 subscribe_context=procedure_context(u.dialplan) if u.group in tls_groups
                 else None,
                 permit=None if u.group in tls_groups else lan_only,
                 fax=u.type is UserType.FAX,
                 variables=[f"{v.GROUP}={u.group}",
                            # a blind transfer is checked with the phone's rights
                            f"TRANSFER_CONTEXT={transfer_context(u.group)}",
                            *([f"{v.DID}={u.office_did}"] if u.office_did else [])])
        for u in site.users if u.type.has_phone and given.realtime_rows is None]
    # a device assigned to nobody registers here: the login code and emergency numbers only
    endpoints += [
        Endpoint(name=hot_desk_endpoint(mac), auth=f"{hot_desk_endpoint(mac)}-auth",
                 username=hot_desk_endpoint(mac), password=password,
                 aor=hot_desk_endpoint(mac), callerid=f'"{HOT_DESK_CALLER}" <{mac}>',
                 language=default_language, context=HOT_DESK_CONTEXT, codecs=allow,
                 mailbox="", media_address=media_address, rtp_timeout=rtp_timeout,
                 rtp_hold_timeout=rtp_hold_timeout, session_expires=session_expires,
                 srtp_optimistic=None, subscribe_context=None, permit=lan_only,
                 fax=False, variables=[])
        for mac, password in given.hot_desks]
    return {
        "user_agent": sip.user_agent,
        "transports": transports,
        "endpoints": endpoints,
        "trunks": pjsip_trunks(site),
        "nodes": _node_trunks(given, allow),
        "qualify_frequency": sip.qualify_frequency,
        "notify_endpoint": NOTIFY_ENDPOINT,
        "notify_context": NO_CALLS_CONTEXT,
    }


@dataclass(frozen=True)
class NodeTrunk:
    """The trunk to another node of the site (issue 22, docs/scaling.md)."""

    name: str
    endpoint: str
    context: str
    codecs: str
    address: str
    sip_port: int
    inbound_auth: str
    inbound_username: str
    outbound_auth: str
    from_user: str
    secret: str


def _node_trunks(given: RenderInput, allow: str) -> list[NodeTrunk]:
    """One trunk per other node, when this configuration's node is known (`local_node`):
    each side challenges the other with the pair's secret (digest both ways), the caller
    names itself in From (`identify_by = username`), only the node's address is permitted."""
    site = given.site
    here = local_node(site)
    if here is None:
        return []
    trunks = []
    for node in site.system.realtime.nodes:
        if node.name == here:
            continue
        pair = (min(here, node.name), max(here, node.name))
        secret = given.node_pair_secrets.get(pair, "")
        if password_problems(secret):
            raise RenderError(f"cannot render: no secret for the trunk between nodes "
                              f"{pair[0]} and {pair[1]} in the vault")
        endpoint = node_endpoint(node.name)
        trunks.append(NodeTrunk(
            name=node.name, endpoint=endpoint, context=FROM_NODES_CONTEXT, codecs=allow,
            address=str(node.address), sip_port=node.sip_port,
            inbound_auth=f"{endpoint}-in", inbound_username=node_endpoint(node.name),
            outbound_auth=f"{endpoint}-out", from_user=node_endpoint(here), secret=secret))
    return trunks


def _modules(site: Site) -> Iterable[str]:
    yield from _STACK
    for codec in dict.fromkeys([*codecs(site), *(c for t in site.trunks for c in t.codecs)]):
        yield from _CODEC_MODULES[codec]


def _checks(sections: list[Section]) -> list[Problem]:
    """Sections without a known type, and references to objects that do not exist."""
    problems: list[Problem] = []
    by_type: dict[str, set[str]] = {}
    for s in sections:
        kind = s.get("type")
        if kind is None:
            problems.append(Problem(f"pjsip.conf line {s.line}", f"[{s.name}] has no type="))
        elif kind not in _TYPES:
            problems.append(Problem(f"pjsip.conf line {s.line}",
                                    f"[{s.name}] has unknown type={kind}"))
        else:
            by_type.setdefault(kind, set()).add(s.name)
    for s in sections:
        kind = s.get("type")
        if kind not in ("endpoint", "identify", "registration"):
            continue
        for key, target in _REFERENCES:
            value = s.get(key)
            if not value or (kind == "endpoint" and key == "endpoint"):
                continue
            for name in (x.strip() for x in value.split(",") if x.strip()):
                if name not in by_type.get(target, set()):
                    problems.append(Problem(f"pjsip.conf line {s.line}",
                                            f"[{s.name}] {key}={name}: no {target} {name!r}"))
    return problems


def objects(sections: list[Section], kind: str) -> dict[str, tuple[tuple[str, str], ...]]:
    return {s.name: tuple(s.items) for s in sections if s.get("type") == kind}


def _expects(sections: list[Section]) -> ObjectKinds:
    return {"endpoint": set(objects(sections, "endpoint")), "aor": set(objects(sections, "aor"))}


def transport_changes(old: list[Section], new: list[Section]) -> list[str]:
    """PJSIP transports added, removed or changed."""
    before, after = objects(old, "transport"), objects(new, "transport")
    out = [f"transport {n!r} added" for n in sorted(after.keys() - before.keys())]
    out += [f"transport {n!r} removed" for n in sorted(before.keys() - after.keys())]
    out += [f"transport {n!r} changed" for n in sorted(before.keys() & after.keys())
            if sorted(before[n]) != sorted(after[n])]
    return out


def _restart_needed(old: list[Section], new: list[Section]) -> list[str]:
    changes = transport_changes(old, new)
    if not changes:
        return []
    return [", ".join(changes) + " (PJSIP transports do not change on reload, and reloading "
            "after a transport change can deadlock PJSIP, asterisk issue #436)"]


FILE = ConfigFile(
    name="pjsip.conf",
    applied_by=Reload("res_pjsip.so", "module reload res_pjsip.so", order=30),
    view=_view,
    modules=_modules,
    checks=_checks,
    expects=_expects,
    restart_needed=_restart_needed,
)
