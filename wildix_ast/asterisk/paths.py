"""Where an Asterisk keeps its files, as Asterisk itself sees them (asterisk.conf)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

DEBIAN_MODULES = PurePosixPath("/usr/lib/x86_64-linux-gnu/asterisk/modules")


@dataclass(frozen=True)
class AsteriskPaths:
    """The [directories] of asterisk.conf. Defaults are Debian's packaged layout."""

    etc: PurePosixPath = PurePosixPath("/etc/asterisk")
    modules: PurePosixPath = DEBIAN_MODULES
    var_lib: PurePosixPath = PurePosixPath("/var/lib/asterisk")
    db: PurePosixPath = PurePosixPath("/var/lib/asterisk")
    key: PurePosixPath = PurePosixPath("/var/lib/asterisk")
    data: PurePosixPath = PurePosixPath("/usr/share/asterisk")
    agi: PurePosixPath = PurePosixPath("/usr/share/asterisk/agi-bin")
    spool: PurePosixPath = PurePosixPath("/var/spool/asterisk")
    run: PurePosixPath = PurePosixPath("/var/run/asterisk")
    log: PurePosixPath = PurePosixPath("/var/log/asterisk")
    cache: PurePosixPath = PurePosixPath("/var/cache/asterisk")

    @classmethod
    def private_under(cls, prefix: PurePosixPath) -> AsteriskPaths:
        """An instance whose writable state all lives under `prefix` (several labs can share
        one root filesystem); modules stay the packaged ones. Its data folder is its own too
        (each lab installs its site's sounds there), made of links to the packaged one."""
        return cls(etc=prefix / "etc", var_lib=prefix / "lib", db=prefix / "lib",
                   data=prefix / "data",
                   key=prefix / "lib/keys", spool=prefix / "spool", run=prefix / "run",
                   log=prefix / "log", cache=prefix / "cache")

    def directories(self) -> list[tuple[str, PurePosixPath]]:
        """(asterisk.conf key, path) of each folder, in asterisk.conf's order."""
        return [("astetcdir", self.etc), ("astmoddir", self.modules),
                ("astvarlibdir", self.var_lib), ("astdbdir", self.db), ("astkeydir", self.key),
                ("astdatadir", self.data), ("astagidir", self.agi), ("astspooldir", self.spool),
                ("astrundir", self.run), ("astlogdir", self.log), ("astcachedir", self.cache)]

    @property
    def mail_drop(self) -> PurePosixPath:
        """Where voicemail's `mailcmd` drops whole messages (`tmp/`, then `new/`) for the
        mail queue's sender (wildix_ast.mail.queue)."""
        return self.spool / "wildix-mail"

    @property
    def fax_spool(self) -> PurePosixPath:
        """Where ReceiveFax writes and the fax hang-up handler drops its jobs (`tmp/`, then
        `new/`) for the Fax2Mail service (wildix_ast.services.fax.inbound)."""
        return self.spool / "wildix-fax"

    @property
    def fax_out_spool(self) -> PurePosixPath:
        """Mail2Fax: the fax sender puts each TIFF to send in `send/`; the fax call's hang-up
        handlers write their records in `tmp/` and move them into `done/`
        (wildix_ast.services.fax.outbound)."""
        return self.spool / "wildix-fax-out"

    @property
    def writable(self) -> list[PurePosixPath]:
        """Folders Asterisk writes to, which must exist before it starts."""
        return sorted({self.etc, self.var_lib, self.db, self.key, self.spool, self.run,
                       self.log, self.cache, self.spool / "voicemail",
                       self.mail_drop / "tmp", self.mail_drop / "new",
                       self.fax_spool / "tmp", self.fax_spool / "new",
                       self.fax_out_spool / "send", self.fax_out_spool / "tmp",
                       self.fax_out_spool / "done"})
