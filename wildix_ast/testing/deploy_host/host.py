"""A Debian forky host booted with systemd in `systemd-nspawn`, reachable over SSH on loopback.

The root filesystem (forky minbase with systemd, sshd, Python and Asterisk 22 preinstalled) is
built once and cached by `wildix_ast.lab.rootfs`, keyed by its package list. Each host boots
an overlay of it (the cache stays untouched; a host's changes live in its own folder) inside a
private mount namespace, so the overlay vanishes with the process.

The host shares this machine's network namespace (nspawn boots systemd here only with
`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 --register=no --keep-unit`, and without a private
network): everything it listens on must be on loopback ports no other run uses.
Ports come from the lab's slot allocator: the slot's SIP, AMI and RTP ports are meant for the
Asterisk deployed on the host, and the slot's spare port `sip + 2` is its sshd.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.cache import cache_dir
from wildix_ast.errors import LabError
from wildix_ast.lab.allocator import port_in_use
from wildix_ast.lab.ports import LabPorts, PortReservation, allocate_ports
from wildix_ast.lab.rootfs import (
    ProgressCallback,
    Recipe,
    ensure_rootfs,
    require_root,
    require_tool,
)

#: What the cached target carries. Asterisk is preinstalled (the role's `apt` step then has
#: nothing to do) because fetching 120 MB of packages on every CI run would dominate it.
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "procps",
    "python3", "python3-venv", "python3-apt", "python3-packaging", "ca-certificates",
    "asterisk", "asterisk-modules", "asterisk-config", "asterisk-moh-opsound-gsm",
)
SUITE = "forky"
HOSTNAME = "forky-target"
SSH_PORT_OFFSET = 2  # the slot's first spare port (SIP is +0, AMI +1)
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
#: Sent to systemd-nspawn, which then powers the container off cleanly.
STOP_SIGNAL = signal.SIGTERM


def _customize(root: Path) -> None:
    # Debian enables asterisk.service on install; booted with the sample configuration it
    # would bind 0.0.0.0:4569, 5060... on the network this host shares with the machine.
    # The role enables and starts it once our configuration is in place.
    wants = root / "etc/systemd/system/multi-user.target.wants"
    (wants / "asterisk.service").unlink(missing_ok=True)
    # A socket-activated sshd would listen on port 22 of the shared network.
    (root / "etc/systemd/system/sockets.target.wants/ssh.socket").unlink(missing_ok=True)
    (root / "etc/hostname").write_text(HOSTNAME + "\n", encoding="utf-8")


RECIPE = Recipe(suite=SUITE, packages=PACKAGES, kind="hosts",
                script="/usr/share/debootstrap/scripts/sid", revision="1", customize=_customize)


def default_state_dir() -> Path:
    """`$WILDIX_AST_DEPLOY_STATE`, else `~/.local/state/wildix-ast/deploy-lab`."""
    default = Path.home() / ".local/state/wildix-ast/deploy-lab"
    return Path(os.environ.get("WILDIX_AST_DEPLOY_STATE") or default).expanduser()


@dataclass(frozen=True)
class HostInfo:
    """What a caller needs to reach a running host."""

    name: str
    pid: int
    ssh_port: int
    ports: LabPorts
    key: Path
    rootfs: Path

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "ssh_port": self.ssh_port,
                "ports": self.ports.to_json(), "key": str(self.key),
                "rootfs": str(self.rootfs)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HostInfo:
        ports = data["ports"]
        if not isinstance(ports, dict):
            raise ValueError("ports is not an object")
        pid, ssh_port = data["pid"], data["ssh_port"]
        if not isinstance(pid, int) or not isinstance(ssh_port, int):
            raise ValueError("pid and ssh_port must be numbers")
        return cls(name=str(data["name"]), pid=pid, ssh_port=ssh_port,
                   ports=LabPorts.from_json(ports), key=Path(str(data["key"])),
                   rootfs=Path(str(data["rootfs"])))

    def ssh_command(self, *remote: str) -> list[str]:
        """`ssh` as root on the host, non-interactive, ignoring its (throwaway) host key."""
        return ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), *SSH_OPTIONS,
                "root@127.0.0.1", *remote]


SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=5")

# In a private mount namespace: the overlay of the cached root (lower) and this host's
# changes (upper), then systemd-nspawn booting it. The shell stays as nspawn's parent so
# the inherited port-slot lock lives exactly as long as the container.
_LAUNCH = ('set -e; mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"; '
           'shift 4; "$@"')


class DeployHost:
    """One booted forky host: `<state_dir>/<name>/` holds its overlay, key, log and state."""

    def __init__(self, name: str = "default", state_dir: Path | None = None) -> None:
        self.name = name
        self.dir = (state_dir or default_state_dir()) / name
        self.state_file = self.dir / "state.json"
        self.log = self.dir / "console.log"
        self.key = self.dir / "id_ed25519"

    # -- reading the state --------------------------------------------------------------

    def info(self) -> HostInfo | None:
        """The running host's details, or None when it is not running."""
        try:
            info = HostInfo.from_json(json.loads(self.state_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            return None
        return info if _alive(info.pid) else None

    # -- starting -----------------------------------------------------------------------

    def up(self, progress: ProgressCallback | None = None, *,
           timeout: float = BOOT_TIMEOUT) -> HostInfo:
        """Boot the host (building the cached root filesystem first if needed) and wait
        until systemd reports the boot finished and sshd answers."""
        running = self.info()
        if running is not None:
            return running
        require_root("booting the deployment host")
        nspawn = require_tool("systemd-nspawn", "systemd-container")
        unshare = require_tool("unshare", "util-linux")
        require_tool("ssh", "openssh-client")
        rootfs = ensure_rootfs(progress, recipe=RECIPE)
        self._reset()
        reservation = self._reserve()
        ssh_port = reservation.ports.sip + SSH_PORT_OFFSET
        self._make_key()
        upper, work, merged = (self.dir / n for n in ("upper", "work", "merged"))
        for folder in (upper, work, merged):
            folder.mkdir(parents=True)
        self._seed_upper(rootfs, upper, ssh_port)
        command = [unshare, "--mount", "--propagation", "private", "--",
                   "sh", "-c", _LAUNCH, "sh", str(rootfs), str(upper), str(work), str(merged),
                   nspawn, "--quiet", "--register=no", "--keep-unit", "--boot",
                   "--console=pipe", f"--machine=wildix-ast-{self.name}",
                   "--directory", str(merged), *self._binds()]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        assert reservation.fd is not None
        with open(self.log, "w", encoding="utf-8") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True, pass_fds=(reservation.fd,))
        reservation.release()  # the launcher holds its own copy now
        info = HostInfo(self.name, process.pid, ssh_port, reservation.ports, self.key, rootfs)
        self.state_file.write_text(json.dumps(info.to_json(), indent=2) + "\n",
                                   encoding="utf-8")
        try:
            self._wait_booted(info, process, timeout)
        except BaseException:
            self.down()
            raise
        return info

    def _reset(self) -> None:
        """Remove what a previous (stopped) boot left: the overlay starts from the cache."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def _reserve(self) -> PortReservation:
        for _ in range(16):
            reservation = allocate_ports()
            if not port_in_use("tcp", reservation.ports.sip + SSH_PORT_OFFSET):
                return reservation
            reservation.release()
        raise LabError("found no free loopback port slot with a free sshd port")

    def _make_key(self) -> None:
        keygen = require_tool("ssh-keygen", "openssh-client")
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C",
                        f"wildix-ast deploy lab {self.name}", "-f", str(self.key)],
                       check=True, stdin=subprocess.DEVNULL)

    def _seed_upper(self, rootfs: Path, upper: Path, ssh_port: int) -> None:
        """Files this host has over the cached root: sshd on its loopback port, our key."""
        def mkdirs(relative: str) -> Path:
            for parent in reversed(Path(relative).parents[:-1]):
                _mirror_dir(rootfs / parent, upper / parent)
            _mirror_dir(rootfs / relative, upper / relative)
            return upper / relative

        sshd = mkdirs("etc/ssh/sshd_config.d") / "wildix-ast-deploy-lab.conf"
        sshd.write_text(f"# this host shares the machine's network: loopback only\n"
                        f"Port {ssh_port}\nListenAddress 127.0.0.1\n"
                        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n",
                        encoding="utf-8")
        # A real host resolves its own name to its address; without it Asterisk looks its
        # name, then the root servers, up in DNS at every start (acl.c, ast_find_ourip).
        hosts = mkdirs("etc") / "hosts"
        hosts.write_text(f"127.0.0.1\tlocalhost\n{_primary_address()}\t{HOSTNAME}\n"
                         "::1\tlocalhost ip6-localhost ip6-loopback\n", encoding="utf-8")
        ssh_dir = mkdirs("root") / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(self.key.with_suffix(".pub").read_text(encoding="utf-8"),
                        encoding="utf-8")
        keys.chmod(0o600)

    def _binds(self) -> list[str]:
        binds: list[str] = []
        # The target fetches wildix-ast's dependencies from PyPI through this machine's
        # network: it must trust the same certificate authorities (an egress proxy's too).
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file():
            binds.append(f"--bind-ro={bundle}")
        # pip's download cache, kept between hosts: CI does not refetch 40 MB of wheels.
        pip_cache = cache_dir() / "hosts" / "pip-cache"
        pip_cache.mkdir(parents=True, exist_ok=True)
        binds.append(f"--bind={pip_cache}:/root/.cache/pip")
        return binds

    def _wait_booted(self, info: HostInfo, process: subprocess.Popen[bytes],
                     timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise LabError(f"the deployment host {self.name!r} stopped while booting "
                               f"(exit {process.returncode}); console: {self.log}\n"
                               + _tail(self.log))
            if _port_open(info.ssh_port):
                result = subprocess.run(
                    info.ssh_command("systemctl", "is-system-running", "--wait"),
                    capture_output=True, text=True, stdin=subprocess.DEVNULL,
                    timeout=max(5.0, deadline - time.monotonic()), check=False)
                state = result.stdout.strip()
                if state in ("running", "degraded"):
                    return
                if result.returncode == 255 and time.monotonic() < deadline:
                    time.sleep(0.5)  # sshd up, but not yet accepting our key
                    continue
                raise LabError(f"the deployment host {self.name!r} booted into state "
                               f"{state or result.stderr.strip()!r}; console: {self.log}")
            if time.monotonic() > deadline:
                raise LabError(f"the deployment host {self.name!r} did not answer SSH on "
                               f"127.0.0.1:{info.ssh_port} within {timeout:g} s; console: "
                               f"{self.log}\n" + _tail(self.log))
            time.sleep(0.3)

    # -- stopping -----------------------------------------------------------------------

    def down(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Power the host off (nspawn shuts systemd down on SIGTERM); True if it ran."""
        try:
            info = HostInfo.from_json(json.loads(self.state_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            return False
        if not _alive(info.pid):
            self.state_file.unlink(missing_ok=True)
            return False
        for child in _children(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, STOP_SIGNAL)
        deadline = time.monotonic() + timeout
        while _alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(info.pid, signal.SIGKILL)
            while _alive(info.pid):
                time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return True


def _mirror_dir(source: Path, target: Path) -> None:
    """Create `target` with the owner and mode of `source` (an overlay upper folder shows
    its own metadata, not the lower one's)."""
    if target.exists():
        return
    st = source.stat()
    target.mkdir()
    os.chown(target, st.st_uid, st.st_gid)
    target.chmod(st.st_mode & 0o7777)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        return False
    return True


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text(encoding="utf-8")
            found.extend(int(p) for p in text.split())
    return found


def _primary_address() -> str:
    """This machine's address towards the outside (the host shares its network); a UDP
    connect sends no packet, it only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.1.1"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace")
                         .splitlines()[-lines:])
    except OSError:
        return "(no console output)"
