"""Fax over real SIP between two lab legs (issue 20, docs/fax.md "Transport"): the site's lab
Asterisk (configured from the settings: a trunk `faxline` with `fax: t38|g711` whose far end
is the relay) and a second, plain lab Asterisk playing the carrier and the remote fax machine
(hand-written configuration: it is not the site under test), with `MediaRelay` between them.

    sender --SIP/RTP/UDPTL--> relay (1 % loss, 0-40 ms jitter) --> site trunk --> fax DID
    --> ReceiveFax (Fax2Mail path) --> spool new/<job>.job + .tif

Each fax is SendFax on a PJSIP channel originated by AMI on the sender, with a caller number
naming the run, so the site's job record (its `from`) tells which run it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.lab_fixtures import PJSIP_MODULES, write_minimal_config
from support.live_site import LiveSite, example_site, live_site, without_trunk_procedures
from wildix_ast.ami import AmiClient
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.media_relay import MediaRelay
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup

#: one relay (own loopback address, so the site's trunks tell them apart) per transport
RELAY_HOSTS = {"t38": "127.0.0.3", "g711": "127.0.0.4"}
#: caller numbers of the runs: this prefix, then the run's number on 4 digits
CALLER_PREFIX = "+3315550"
#: the runs of each transport are numbered from here (their caller numbers differ)
FIRST_RUN = {"g711": 1000, "t38": 2000}
SENDER_MODULES = (*PJSIP_MODULES, "res_pjsip_endpoint_identifier_ip.so", "res_pjsip_t38.so",
                  "codec_alaw.so", "res_fax.so", "res_fax_spandsp.so")


def trunk_name(fax: str) -> str:
    return f"fax{fax}"


def sender_pjsip_conf(relay_ports: dict[str, int]) -> str:
    """The sender's side of each trunk (endpoint `t38` or `g711`), everything towards its
    relay's left port."""
    text = """\
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:@SIP_PORT@
"""
    for fax, port in relay_ports.items():
        t38 = ("t38_udptl = yes\nt38_udptl_ec = redundancy\nt38_udptl_nat = yes\n"
               if fax == "t38" else "")
        text += f"""
[{fax}]
type = endpoint
context = from-site
disallow = all
allow = alaw
aors = {fax}
direct_media = no
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes
{t38}
[{fax}]
type = aor
contact = sip:{RELAY_HOSTS[fax]}:{port}

[{fax}-identify]
type = identify
endpoint = {fax}
match = {RELAY_HOSTS[fax]}
"""
    return text


def fax_site(relays: dict[str, MediaRelay]) -> Site:
    """The example site with its trunks replaced by one IP trunk per transport, at its
    relay's right port, with `fax: t38` or `fax: g711` (any DID: the fax DID reaches the
    fax user through wildix-did)."""
    site = without_trunk_procedures(example_site())
    trunks = [Trunk.model_validate({
        "name": trunk_name(fax), "auth": "ip", "host": RELAY_HOSTS[fax],
        "port": relay.right_port, "codecs": ["alaw"], "fax": fax, "qualify_frequency": 0})
        for fax, relay in relays.items()]
    # the example's outgoing group keeps its name (the dialplan's general settings use it)
    groups = [TrunkGroup(name=g.name, trunks=[t.name for t in trunks])
              for g in site.trunk_groups]
    return site.model_copy(update={"trunks": trunks, "trunk_groups": groups})


@dataclass
class FaxLine:
    site: LiveSite
    sender: Lab
    relays: dict[str, MediaRelay]

    @property
    def spool(self) -> Path:
        lab = self.site.lab
        return lab.host_path(lab.paths.fax_spool)

    @property
    def did(self) -> str:
        user = next(u for u in self.site.compiled.site.users if u.type == "fax")
        assert user.fax_did is not None
        return user.fax_did

    def sender_path(self, name: str) -> tuple[Path, str]:
        """(host path, path as the sender's Asterisk sees it) of a file in its spool."""
        inside = self.sender.paths.spool / name
        return self.sender.host_path(inside), str(inside)

    def send(self, tiff_inside: str, fax: str, runs: list[int]) -> None:
        """Originate one SendFax per run over `fax`'s trunk (caller number names the run)."""
        async def go() -> None:
            async with AmiClient("127.0.0.1", self.sender.ports.ami, "lab",
                                 "lab-secret") as ami:
                for run in runs:
                    await ami.action("Originate", Channel=f"PJSIP/{self.did}@{fax}",
                                     Application="SendFax", Data=f"{tiff_inside},f",
                                     CallerID=f"<{caller(run)}>", Async="true",
                                     Timeout="20000")

        asyncio.run(go())

    def records(self) -> dict[str, dict[str, str]]:
        """The site's finished fax jobs in new/: caller number -> the record's fields."""
        found: dict[str, dict[str, str]] = {}
        for path in (self.spool / "new").glob("*.job"):
            fields = dict(line.split("=", 1) for line in path.read_text().splitlines()
                          if "=" in line)
            fields["path"] = str(path)
            found[fields.get("from", "")] = fields
        return found

    def clear(self) -> None:
        for folder in ("new", "tmp"):
            for old in (self.spool / folder).glob("*"):
                old.unlink()

    def wait_records(self, runs: list[int], timeout: float) -> dict[str, dict[str, str]]:
        wanted = {caller(r) for r in runs}
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if wanted <= records.keys() or time.monotonic() > deadline:
                return records
            time.sleep(0.5)


def caller(run: int) -> str:
    return f"{CALLER_PREFIX}{run:04d}"


@contextmanager
def fax_line(work: Path, *, loss: float = 0.01, jitter: float = 0.040,
             seed: int = 20, carrier_dialplan: str = "[from-site]\n",
             carrier_modules: tuple[str, ...] = (),
             site_changes: Callable[[Site], Site] | None = None) -> Iterator[FaxLine]:
    """The site's lab (from the settings: trunks `faxt38` and `faxg711`, then
    `site_changes`), the sender's lab (its extensions.conf `carrier_dialplan`, its calls
    from the site entering `from-site`) and a relay per transport between them, all
    running."""
    relays = {fax: MediaRelay(host, ("127.0.0.1", 0), ("127.0.0.1", 0), loss=loss,
                              jitter=jitter, seed=seed + n)
              for n, (fax, host) in enumerate(RELAY_HOSTS.items())}
    sender = Lab("faxsender", work / "sender")
    try:
        site_settings = fax_site(relays)
        if site_changes is not None:
            site_settings = site_changes(site_settings)
        with live_site(work / "site", "faxsite", site_settings) as site:
            for relay in relays.values():
                relay.peers = {"left": ("127.0.0.1", sender.ports.sip),
                               "right": ("127.0.0.1", site.lab.ports.sip)}
                relay.start()
            write_minimal_config(sender, extra_modules=(*SENDER_MODULES, *carrier_modules),
                                 extra_files={
                "pjsip.conf": sender_pjsip_conf({f: r.left_port for f, r in relays.items()}),
                "extensions.conf": carrier_dialplan})
            sender.start()
            try:
                yield FaxLine(site, sender, relays)
            finally:
                sender.stop()
    finally:
        for relay in relays.values():
            relay.stop()
