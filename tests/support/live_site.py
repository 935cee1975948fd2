"""A live site for integration tests: the example site, imported into a fresh SQLite store,
rendered for a fresh lab instance and running on a real Asterisk 22."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from wildix_ast.ami import AmiClient
from wildix_ast.apply.pipeline import (
    Compiled,
    Target,
    compile_site,
    config_target,
    install_stored_site,
    site_sounds,
)
from wildix_ast.asterisk_cli import AsteriskCli
from wildix_ast.lab.instance import DEFAULT_NAMESERVER, Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.lab.sipp import SippDriver
from wildix_ast.lab.tls import lab_certificate
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.store import Store, open_store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"
#: The external address a lab site with TLS announces to phones outside lan_networks (a
#: documentation address, RFC 5737), and the network its test phones on 127.0.0.1 are in.
LAB_EXTERNAL_ADDRESS = IPv4Address("203.0.113.7")
LAB_LAN = IPv4Network("127.0.0.1/32")
#: Short enough for no-answer tests to stay quick, long enough for SIPp to answer.
TEST_RING_TIMEOUT = 6


def example_site(ring_timeout: int = TEST_RING_TIMEOUT) -> Site:
    site = load_site(EXAMPLE)
    dialplan = site.dialplan.model_copy(update={"ring_timeout": ring_timeout})
    return site.model_copy(update={"dialplan": dialplan})


def without_trunk_procedures(site: Site) -> Site:
    """The example's `mobiles` procedure dials the example's trunks: tests that replace the
    trunks with their own providers drop it."""
    procedures = [p for p in site.dialplan.procedures if p.name != "mobiles"]
    return site.model_copy(update={"dialplan": site.dialplan.model_copy(
        update={"procedures": procedures})})


@dataclass
class LiveSite:
    lab: Lab
    store: Store
    compiled: Compiled
    work: Path

    @property
    def target(self) -> Target:
        return self.lab.target()

    def password(self, extension: str) -> str:
        user = next(u for u in self.compiled.site.users if u.extension == extension)
        assert user.sip_password is not None
        return user.sip_password

    def sipp(self) -> SippDriver:
        return SippDriver(self.lab.ports.sip, work_dir=self.work / "sipp")

    def ami(self) -> AmiClient:
        return self.compiled.ami()

    def console(self) -> AsteriskCli:
        """The lab's root-only console (CLI commands: no AMI account the site has may)."""
        return self.target.console()

    def recompile(self, site: Site) -> Compiled:
        return compile_site(site, self.store, self.target)

    def channels(self) -> int:
        async def count() -> int:
            async with self.ami() as ami:
                return await ami.channels_count()

        return asyncio.run(count())

    def wait_no_channels(self, timeout: float = 5.0) -> int:
        """Channels left after `timeout` (hang-ups take a moment to finish)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.channels()
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


@contextmanager
def live_site(work: Path, name: str, site: Site | None = None, *,
              nameserver: str = DEFAULT_NAMESERVER, tls: bool = False,
              from_store: bool = True,
              before_install: Callable[[Store], None] | None = None) -> Iterator[LiveSite]:
    """`tls`: the site gets a TLS transport with a certificate made for the lab.
    `from_store=False` installs `site` as given rather than as the store reads it back
    (sections the store does not keep yet: trunks, routing). `before_install` changes the
    store after the import, before the files are made (devices, for their endpoints)."""
    ensure_rootfs()
    store = open_store(str(work / "store.sqlite3"))
    site = site or example_site()
    lab = Lab(name, work / "lab", nameserver=nameserver)
    if tls:
        cert, key = lab_certificate(lab)
        # TLS is for phones outside lan_networks, which are told the external address:
        # the test phones on 127.0.0.1 are inside, one on another loopback address outside
        sip = site.system.sip_rtp.model_copy(update={
            "tls_certificate": str(cert), "tls_private_key": str(key),
            "external_address": site.system.sip_rtp.external_address or LAB_EXTERNAL_ADDRESS,
            "lan_networks": [*site.system.sip_rtp.lan_networks, LAB_LAN]})
        site = site.model_copy(update={"system": site.system.model_copy(
            update={"sip_rtp": sip})})
    # Sound files named relative to the example's folder, converted as `import` does.
    sounds = site_sounds(site, EXAMPLE, store)
    store.import_site(site, sounds=sounds)
    if before_install is not None:
        before_install(store)
    compiled = compile_site(site, store, lab.target(), sounds=sounds)
    if from_store:
        install_stored_site(store, lab.target())
    else:
        config = config_target(lab.target(), compiled)
        with config.locked():
            config.install(config.plan(compiled.files))
    lab.start()
    try:
        yield LiveSite(lab=lab, store=store, compiled=compiled, work=work)
    finally:
        lab.stop()
        store.close()
