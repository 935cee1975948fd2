"""Helpers for tests that need a live lab Asterisk: a minimal hand-written configuration and
checks that an instance left nothing behind.

Use from a test module:

    from support.lab_fixtures import running_lab, write_minimal_config

    @pytest.fixture
    def lab(tmp_path):
        with running_lab(tmp_path / "lab", "a") as lab:
            yield lab
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wildix_ast.asterisk.paths import AsteriskPaths
from wildix_ast.lab.instance import Lab, processes_in_mount_ns
from wildix_ast.lab.ports import LabPorts

#: Modules the minimal configuration loads: enough for a console, AMI and a dialplan.
MINIMAL_MODULES = (
    "res_timing_timerfd.so",
    "pbx_config.so",
    "app_echo.so",
    "app_playback.so",
    "chan_bridge_media.so",
    "res_sorcery_config.so",
    "res_pjproject.so",
    "res_rtp_asterisk.so",
)

#: Added to MINIMAL_MODULES for PJSIP endpoints that register with a password.
PJSIP_MODULES = (
    "res_sorcery_memory.so", "res_sorcery_astdb.so", "res_pjsip.so", "res_pjsip_session.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so", "res_pjsip_sdp_rtp.so", "res_pjsip_pubsub.so", "chan_pjsip.so",
    "codec_ulaw.so", "bridge_simple.so",
)


def pjsip_phone_conf(ext: str, password: str, context: str) -> str:
    """pjsip.conf: a UDP transport on the lab's SIP port (@SIP_PORT@, filled in by
    `write_minimal_config`) and one phone `ext` that authenticates with `password`."""
    return f"""\
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:@SIP_PORT@

[{ext}]
type = endpoint
context = {context}
disallow = all
allow = ulaw
auth = {ext}
aors = {ext}

[{ext}]
type = aor
max_contacts = 1

[{ext}]
type = auth
auth_type = userpass
username = {ext}
password = {password}
"""


def asterisk_conf(paths: AsteriskPaths) -> str:
    """asterisk.conf whose [directories] are `paths`."""
    return f"""\
[directories]
astetcdir => {paths.etc}
astmoddir => {paths.modules}
astvarlibdir => {paths.var_lib}
astdbdir => {paths.db}
astkeydir => {paths.key}
astdatadir => {paths.data}
astagidir => {paths.agi}
astspooldir => {paths.spool}
astrundir => {paths.run}
astlogdir => {paths.log}
astcachedir => {paths.cache}

[options]
verbose = 3
debug = 0
nocolor = yes
dumpcore = no
documentation_language = en_US
"""


def modules_conf(modules: tuple[str, ...] = MINIMAL_MODULES) -> str:
    """modules.conf that loads only `modules`."""
    return "[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in modules)


LOGGER_CONF = """\
[general]
dateformat = %F %T.%3q

[logfiles]
console => notice,warning,error,verbose
full => notice,warning,error,verbose,dtmf
"""


def manager_conf(ports: LabPorts, secret: str = "lab-secret") -> str:
    """manager.conf: AMI on the lab's loopback port with one account `lab`."""
    return f"""\
[general]
enabled = yes
bindaddr = {ports.host}
port = {ports.ami}

[lab]
secret = {secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all
"""


def rtp_conf(ports: LabPorts) -> str:
    return f"[general]\nrtpstart = {ports.rtp_start}\nrtpend = {ports.rtp_end}\n"


EXTENSIONS_CONF = """\
[general]
static = yes
writeprotect = yes

[lab]
exten => 600,1,Answer()
 same => n,Echo()
 same => n,Hangup()
"""


def write_minimal_config(lab: Lab, *, with_manager: bool = True,
                         extra_modules: tuple[str, ...] = (),
                         extra_files: dict[str, str] | None = None) -> None:
    """Write the minimal configuration (asterisk.conf, modules.conf, logger.conf,
    extensions.conf, rtp.conf and, optionally, manager.conf) into `lab.etc_dir`, plus
    `extra_modules` to load and `extra_files` (which win over the minimal ones; @SIP_PORT@
    in them becomes the lab's SIP port)."""
    etc = lab.etc_dir
    files = {
        "asterisk.conf": asterisk_conf(lab.paths),
        "modules.conf": modules_conf(MINIMAL_MODULES + extra_modules),
        "logger.conf": LOGGER_CONF,
        "extensions.conf": EXTENSIONS_CONF,
        "rtp.conf": rtp_conf(lab.ports),
    }
    if with_manager:
        files["manager.conf"] = manager_conf(lab.ports)
    files.update({name: text.replace("@SIP_PORT@", str(lab.ports.sip))
                  for name, text in (extra_files or {}).items()})
    for name, text in files.items():
        (etc / name).write_text(text, encoding="utf-8")


@contextmanager
def running_lab(state_dir: Path, name: str = "test", timeout: float = 30.0, *,
                extra_modules: tuple[str, ...] = (),
                extra_files: dict[str, str] | None = None) -> Iterator[Lab]:
    """A started lab with the minimal configuration (see `write_minimal_config` for the
    extras); stopped (and checked clean) on exit."""
    lab = Lab(name, state_dir)
    write_minimal_config(lab, extra_modules=extra_modules, extra_files=extra_files)
    lab.start(timeout=timeout)
    try:
        yield lab
    finally:
        mount_ns = lab_mount_ns(lab)
        lab.stop()
        assert_stopped_clean(lab, mount_ns)


def lab_mount_ns(lab: Lab) -> str:
    """The running instance's mount namespace ('mnt:[...]'), '' if not running."""
    pid = lab.pid
    if pid is None:
        return ""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def instance_mounts(pid: int) -> list[str]:
    """Mount points (as the instance sees them) of a running instance."""
    text = Path(f"/proc/{pid}/mounts").read_text(encoding="utf-8")
    return [line.split()[1] for line in text.splitlines()]


def host_mounts_under(path: Path) -> list[str]:
    """Host mount points at or below `path` (should always be none for the lab)."""
    prefix = str(path.resolve())
    text = Path("/proc/mounts").read_text(encoding="utf-8")
    return [line.split()[1] for line in text.splitlines()
            if line.split()[1] == prefix or line.split()[1].startswith(prefix + "/")]


def assert_stopped_clean(lab: Lab, mount_ns: str, old_pid: int | None = None) -> None:
    """No process of the instance is left (so its namespace and mounts are gone) and nothing
    of it is mounted on the host."""
    assert not lab.is_running()
    if old_pid is not None:
        assert not Path(f"/proc/{old_pid}").exists() or \
            Path(f"/proc/{old_pid}/stat").read_text().split(")")[1].split()[0] == "Z", \
            f"pid {old_pid} is still alive"
    if mount_ns:
        assert processes_in_mount_ns(mount_ns) == [], f"processes left in {mount_ns}"
    assert host_mounts_under(lab.rootfs) == []
    assert host_mounts_under(lab.dir) == []
