"""One live Asterisk 22 of the lab, running in the shared cached root filesystem.

Each instance has a folder on the host, `<state_dir>/<name>/`:

- `srv/` holds the instance's private Asterisk folders (etc, lib, spool, run, log, cache); it
  is bind-mounted on `/srv/wildix-ast` inside the root filesystem, so Asterisk sees
  `AsteriskPaths.private_under(/srv/wildix-ast)`;
- `asterisk.out` receives everything Asterisk prints (its console output and startup errors);
- `state.json` records the pid, its start time, its mount namespace and the ports, so
  another process (`wildix-ast lab status`, `lab down`) can find the instance.

Asterisk runs in a private mount namespace (`unshare --mount --propagation private`) where
proc, /dev and the instance folder are mounted inside the root filesystem before
`exec chroot`: several instances share one root filesystem, nothing is mounted on the host,
and the mounts vanish with the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from wildix_ast.asterisk.paths import AsteriskPaths
from wildix_ast.conf import ConfigSyntaxError, directories
from wildix_ast.errors import LabError, WildixError
from wildix_ast.lab.ports import (
    LabPorts,
    PortReservation,
    allocate_ports,
    check_ports_free,
    reserve_slot_of,
)
from wildix_ast.lab.rootfs import (
    ASTERISK_BINARY,
    MOUNT_POINT,
    ensure_rootfs,
    is_built,
    require_root,
    require_tool,
)

if TYPE_CHECKING:
    from wildix_ast.apply.pipeline import Target

DEFAULT_NAME = "default"
LOG_TAIL_LINES = 30
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# In the namespace: mount proc and /dev, bind the instance folder, then become Asterisk.
# The instance's own hosts and resolv.conf hide the shared root filesystem's: Asterisk
# resolves the host name (ast_find_ourip) and must find it in the hosts file, and a look-up
# that still happens goes to a loopback resolver, never to the host's DNS server.
_LAUNCH = ('set -e; mount -t proc proc "$1/proc"; mount --rbind /dev "$1/dev"; '
           'mount --bind "$2" "$1$3"; mount --bind "$6" "$1/etc/hosts"; '
           'mount --bind "$7" "$1/etc/resolv.conf"; exec chroot "$1" "$4" -f -n -C "$5"')
#: Where a lab Asterisk sends DNS queries: loopback, where nothing answers unless a test
#: listens there (a query then fails at once instead of stalling a SIP worker).
DEFAULT_NAMESERVER = "127.0.0.1"


def _in_root(root: Path, path: PurePosixPath, hops: int = 40) -> Path:
    """The host path of `path` as seen inside the root filesystem `root`, its symbolic
    links followed there (Debian's `sounds/en` -> /etc/alternatives/... -> the voice)."""
    pending = list(path.parts[1:])
    current = root
    while pending:
        part = pending.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops -= 1
            if hops < 0:
                raise LabError(f"{path}: too many symbolic links in the root filesystem")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                current, pending = root, [*target.parts[1:], *pending]
            else:
                pending = [*target.parts, *pending]
        else:
            current = candidate
    return current


def default_state_dir() -> Path:
    """`$WILDIX_AST_LAB_STATE`, else `~/.local/state/wildix-ast/lab`."""
    configured = os.environ.get("WILDIX_AST_LAB_STATE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".local" / "state" / "wildix-ast" / "lab"


@dataclass(frozen=True)
class ProcessId:
    """A pid plus what tells it apart from a later process reusing the number."""

    pid: int
    start_ticks: int
    mount_ns: str


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _mount_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def processes_in_mount_ns(mount_ns: str) -> list[int]:
    """Every live process whose mount namespace is `mount_ns` (e.g. 'mnt:[4026532]')."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _mount_ns(int(entry.name)) == mount_ns:
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip() or "(empty)"
    except OSError:
        return "(no log)"


class Lab:
    """A lab Asterisk instance named `name`, its files under `<state_dir>/<name>/`.

    Typical use: write configuration into `etc_dir` (an asterisk.conf whose [directories]
    are `paths`, listening on `ports`), then `start()`, `cli(...)`, `stop()`."""


    def target(self) -> Target:
        """Where `apply` writes this lab's configuration and sound files."""
        from wildix_ast.apply.pipeline import Target  # only the verbs that apply pay for it

        return Target(name=f"lab {self.name}", etc_dir=self.etc_dir, paths=self.paths,
                      ports=self.ports, data_dir=self.data_dir, runner=self.cli,
                      spool_dir=self.host_path(self.paths.spool))
    def __init__(self, name: str = DEFAULT_NAME, state_dir: Path | None = None, *,
                 rootfs: Path | None = None, ports: LabPorts | None = None,
                 nameserver: str = DEFAULT_NAMESERVER) -> None:
        if not _NAME.match(name):
            raise LabError(f"invalid lab name {name!r}: use letters, digits, '.', '_', '-'")
        self.name = name
        self.dir = (state_dir or default_state_dir()) / name
        self.paths = AsteriskPaths.private_under(MOUNT_POINT)
        self._rootfs = rootfs
        self._reservation: PortReservation | None = None
        self._explicit_ports = ports
        self._process: subprocess.Popen[bytes] | None = None
        self.nameserver = nameserver

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, {str(self.dir.parent)!r})"

    # ----------------------------------------------------------------- files and state
    @property
    def srv_dir(self) -> Path:
        """The host folder Asterisk sees as /srv/wildix-ast."""
        return self.dir / "srv"

    def host_path(self, path: PurePosixPath) -> Path:
        """The host path of a path under /srv/wildix-ast as Asterisk sees it."""
        try:
            relative = path.relative_to(MOUNT_POINT)
        except ValueError:
            raise LabError(f"{path} is not inside the instance folder {MOUNT_POINT}") from None
        return self.srv_dir / relative

    def prepare(self) -> None:
        """Create the instance's private Asterisk folders (idempotent)."""
        for path in self.paths.writable:
            self.host_path(path).mkdir(parents=True, exist_ok=True)

    @property
    def etc_dir(self) -> Path:
        """Host folder where configuration files must be written (created on first use)."""
        self.prepare()
        return self.host_path(self.paths.etc)

    @property
    def data_dir(self) -> Path:
        """Host folder Asterisk sees as its data folder (sounds, hold music): links to the
        root filesystem's, plus the site's sounds (`link_packaged_data`)."""
        return self.host_path(self.paths.data)

    def link_packaged_data(self, rootfs: Path) -> None:
        """Fill the private data folder with links to the packaged one, so Asterisk finds
        its prompts, music and documentation there, while the site's sounds are written
        into the instance's own folders (never into the shared root filesystem).

        Each language folder of `sounds/` is a real folder of links (one per prompt and
        subfolder), so `sounds/<language>/wildix-ast/` can be the instance's own. Links point
        at paths as Asterisk sees them inside the root filesystem; existing entries (the
        site's sounds, links made before) are kept, so this is idempotent."""
        packaged = PurePosixPath("/usr/share/asterisk")
        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        for entry in sorted(_in_root(rootfs, packaged).iterdir()):
            if entry.name != "sounds" and not os.path.lexists(data / entry.name):
                (data / entry.name).symlink_to(packaged / entry.name)
        sounds = packaged / "sounds"
        (data / "sounds").mkdir(exist_ok=True)
        for entry in sorted(_in_root(rootfs, sounds).iterdir()):
            resolved = _in_root(rootfs, sounds / entry.name)
            own = data / "sounds" / entry.name
            if not resolved.is_dir() or entry.name in ("custom", "recordings"):
                if not os.path.lexists(own):
                    own.symlink_to(sounds / entry.name)
                continue
            own.mkdir(exist_ok=True)
            for child in resolved.iterdir():
                if not os.path.lexists(own / child.name):
                    (own / child.name).symlink_to(sounds / entry.name / child.name)

    @property
    def log_dir(self) -> Path:
        """Host folder of Asterisk's logger files (`full`, `messages`... per logger.conf)."""
        return self.host_path(self.paths.log)

    @property
    def log_path(self) -> Path:
        """Everything Asterisk printed on its standard output and error."""
        return self.dir / "asterisk.out"

    @property
    def hosts_path(self) -> Path:
        """The hosts file Asterisk sees as /etc/hosts: localhost and this host's name."""
        return self.dir / "hosts"

    @property
    def resolv_conf_path(self) -> Path:
        """The resolv.conf Asterisk sees: only `nameserver`, one short try."""
        return self.dir / "resolv.conf"

    def _write_name_files(self) -> None:
        name = socket.gethostname()
        names = "localhost" if name in ("", "localhost") else f"localhost {name}"
        self.hosts_path.write_text(f"127.0.0.1\t{names}\n::1\tlocalhost ip6-localhost "
                                   "ip6-loopback\n", encoding="utf-8")
        self.resolv_conf_path.write_text(f"nameserver {self.nameserver}\n"
                                         "options timeout:1 attempts:1\n", encoding="utf-8")

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    def _read_state(self) -> dict[str, object]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, **changes: object) -> None:
        self._replace_state({**self._read_state(), **changes})

    def _replace_state(self, data: dict[str, object]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        temp = self.state_path.with_suffix(".tmp")
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temp, self.state_path)

    @property
    def saved_ports(self) -> LabPorts | None:
        """The ports recorded in the state file (no allocation), or None."""
        saved = self._read_state().get("ports")
        if isinstance(saved, dict):
            with contextlib.suppress(KeyError, ValueError):
                return LabPorts.from_json(saved)
        return None

    @property
    def ports(self) -> LabPorts:
        """The instance's loopback ports: given, remembered from the last run, or freshly
        allocated (and remembered). Known before `start()`, so configuration can use them."""
        if self._explicit_ports is not None:
            return self._explicit_ports
        if self._reservation is not None:
            return self._reservation.ports
        previous = self.saved_ports
        if previous is not None:
            if self.is_running():
                return previous  # the running Asterisk holds their reservation
            self._reservation = reserve_slot_of(previous)
            if self._reservation is not None:
                return self._reservation.ports
        self._reservation = allocate_ports()
        self._write_state(ports=self._reservation.ports.to_json())
        return self._reservation.ports

    @property
    def rootfs(self) -> Path:
        """The root filesystem this instance runs in (built on first use)."""
        if self._rootfs is None:
            saved = self._read_state().get("rootfs")
            if self.is_running() and isinstance(saved, str):
                self._rootfs = Path(saved)
            else:
                self._rootfs = ensure_rootfs()
        return self._rootfs

    # ----------------------------------------------------------------- process
    def _process_id(self) -> ProcessId | None:
        state = self._read_state()
        pid, ticks, ns = state.get("pid"), state.get("start_ticks"), state.get("mount_ns")
        if isinstance(pid, int) and isinstance(ticks, int) and isinstance(ns, str):
            return ProcessId(pid, ticks, ns)
        return None

    @property
    def pid(self) -> int | None:
        """Asterisk's pid while it runs, else None."""
        ident = self._process_id()
        return ident.pid if ident is not None and self._alive(ident) else None

    def _alive(self, ident: ProcessId) -> bool:
        if self._process is not None and self._process.pid == ident.pid:
            if self._process.poll() is not None:
                return False
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(ident.pid, os.WNOHANG)  # reap it if it is our zombie
        stat = _proc_stat(ident.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == ident.start_ticks

    def is_running(self) -> bool:
        """True while this instance's Asterisk process lives."""
        ident = self._process_id()
        return ident is not None and self._alive(ident)

    @property
    def started_at(self) -> float | None:
        """Wall-clock time (epoch seconds) of the last start, while running."""
        value = self._read_state().get("started_at")
        return float(value) if isinstance(value, int | float) and self.is_running() else None

    def _check_config(self) -> None:
        conf = self.etc_dir / "asterisk.conf"
        if not conf.is_file():
            raise LabError(f"{conf} is missing: write the instance's configuration into "
                           f"{self.etc_dir} (at least asterisk.conf, whose [directories] "
                           f"use {MOUNT_POINT}/...) before starting the lab")
        wanted = {"astetcdir": self.paths.etc, "astrundir": self.paths.run,
                  "astlogdir": self.paths.log}
        try:
            found = directories(conf.read_text(encoding="utf-8", errors="replace"))
        except ConfigSyntaxError as e:
            raise LabError(f"{conf}: {e}") from None
        for key, path in wanted.items():
            if found.get(key) != str(path):
                raise LabError(f"{conf}: [directories] {key} must be {path} (the lab's "
                               f"private folder as Asterisk sees it), found "
                               f"{found.get(key, 'nothing')}")

    def start(self, timeout: float = 30.0) -> None:
        """Start Asterisk and wait until it is fully booted.

        Precondition: `etc_dir` holds asterisk.conf (and whatever else the instance needs).
        Raises LabError if it is already running, a port is taken, Asterisk exits or does
        not finish booting within `timeout` seconds (with the tail of its output)."""
        require_root("starting the lab")
        unshare = require_tool("unshare", "util-linux")
        require_tool("nsenter", "util-linux")
        if self.is_running():
            raise LabError(f"lab {self.name!r} is already running (pid {self.pid}); "
                           "stop it first (wildix-ast lab down)")
        self._check_config()
        rootfs = self.rootfs
        if not is_built(rootfs):
            raise LabError(f"{rootfs} is not a complete lab root filesystem: "
                           "run `wildix-ast lab build`")
        self.prepare()
        self.link_packaged_data(rootfs)
        self._write_name_files()
        run_dir = self.host_path(self.paths.run)
        for leftover in ("asterisk.ctl", "asterisk.pid"):
            (run_dir / leftover).unlink(missing_ok=True)
        ports = self.ports
        check_ports_free(ports)
        lock_fd = self._reservation.fd if self._reservation is not None else None
        command = [unshare, "--mount", "--propagation", "private", "--", "sh", "-c", _LAUNCH,
                   "wildix-ast-lab", str(rootfs), str(self.srv_dir), str(MOUNT_POINT),
                   str(ASTERISK_BINARY), str(self.paths.etc / "asterisk.conf"),
                   str(self.hosts_path), str(self.resolv_conf_path)]
        output: IO[bytes]
        with open(self.log_path, "ab") as output:
            output.write(f"\n=== wildix-ast lab {self.name}: start "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {ports}\n".encode())
            output.flush()
            offset = output.tell()
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                cwd="/", start_new_session=True,
                pass_fds=(lock_fd,) if lock_fd is not None else ())
        self._process = process
        deadline = time.monotonic() + timeout
        try:
            ident = self._await_exec(process, deadline, offset)
            self._write_state(pid=ident.pid, start_ticks=ident.start_ticks,
                              mount_ns=ident.mount_ns, ports=ports.to_json(),
                              rootfs=str(rootfs), started_at=time.time())
            self._await_boot(process, deadline, offset)
        except BaseException:
            self._kill(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            self._process = None
            self._forget_process()
            raise

    def _failure(self, what: str, offset: int) -> LabError:
        return LabError(f"lab {self.name!r}: {what}; last lines of {self.log_path}:\n"
                        f"{self._tail_since(offset)}")

    def _tail_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-LOG_TAIL_LINES:]) or "(no output)"

    def _await_exec(self, process: subprocess.Popen[bytes], deadline: float,
                    offset: int) -> ProcessId:
        """Wait until the launcher has become Asterisk (same pid, new root)."""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise self._failure(f"Asterisk exited during start (exit {process.returncode})",
                                    offset)
            try:
                root = os.readlink(f"/proc/{process.pid}/root")
                exe = os.readlink(f"/proc/{process.pid}/exe")
            except OSError:
                root = exe = ""
            if root != "/" and exe.endswith(str(ASTERISK_BINARY)):
                stat = _proc_stat(process.pid)
                if stat is not None:
                    return ProcessId(process.pid, stat[1], _mount_ns(process.pid))
            time.sleep(0.02)
        raise self._failure("timed out before Asterisk was launched within the start "
                            "timeout", offset)

    def _await_boot(self, process: subprocess.Popen[bytes], deadline: float,
                    offset: int) -> None:
        control = self.host_path(self.paths.run) / "asterisk.ctl"
        last_error = ""
        while True:
            remaining = deadline - time.monotonic()
            if process.poll() is not None:
                raise self._failure(f"Asterisk exited during start (exit {process.returncode})",
                                    offset)
            if remaining <= 0:
                raise self._failure("Asterisk did not finish booting within the start "
                                    f"timeout ({last_error or 'no control socket yet'})",
                                    offset)
            if control.exists():
                try:
                    reply = self.cli("core waitfullybooted", timeout=max(remaining, 0.5))
                except LabError as error:
                    last_error = error.message
                else:
                    if "fully booted" in reply:
                        return
                    last_error = reply.strip()
            time.sleep(0.05)

    def _kill(self, pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _wait_gone(self, ident: ProcessId, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._alive(ident):
                return True
            time.sleep(0.02)
        return not self._alive(ident)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop Asterisk: `core stop now`, then SIGTERM, then SIGKILL. Afterwards no process
        of the instance is left, so its mount namespace and mounts are gone. Returns whether
        it was running."""
        ident = self._process_id()
        was_running = ident is not None and self._alive(ident)
        if ident is not None and was_running:
            with contextlib.suppress(LabError):
                self.cli("core stop now", timeout=min(timeout, 5.0))
            if not self._wait_gone(ident, timeout):
                self._kill(ident.pid, signal.SIGTERM)
                if not self._wait_gone(ident, 5.0):
                    self._kill(ident.pid, signal.SIGKILL)
                    if not self._wait_gone(ident, 5.0):
                        raise LabError(f"lab {self.name!r}: Asterisk (pid {ident.pid}) "
                                       "survived SIGKILL; look at it with `ps -p "
                                       f"{ident.pid} -o pid,stat,wchan,cmd`")
        if ident is not None and ident.mount_ns:
            # helpers still inside the namespace (an `asterisk -rx`, a System() child)
            for pid in processes_in_mount_ns(ident.mount_ns):
                if pid != os.getpid():
                    self._kill(pid)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            self._process = None
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None
        self._forget_process()
        return was_running

    def _forget_process(self) -> None:
        state = self._read_state()
        if state:
            for key in ("pid", "start_ticks", "mount_ns", "started_at"):
                state.pop(key, None)
            self._replace_state(state)

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run one Asterisk console command (`asterisk -rx`) and return its output."""
        ident = self._process_id()
        if ident is None or not self._alive(ident):
            raise LabError(f"lab {self.name!r} is not running: start it first "
                           "(wildix-ast lab up)")
        nsenter = require_tool("nsenter", "util-linux")
        try:
            result = subprocess.run(
                [nsenter, "--target", str(ident.pid), "--mount", "--root", "--wd=/",
                 str(ASTERISK_BINARY), "-C", str(self.paths.etc / "asterisk.conf"),
                 "-rx", command],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired:
            raise LabError(f"lab {self.name!r}: `{command}` did not answer within "
                           f"{timeout:g} s") from None
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip() or "no output")
            raise LabError(f"lab {self.name!r}: `asterisk -rx {command!r}` failed "
                           f"(exit {result.returncode}): {detail}")
        return result.stdout

    def version(self) -> str:
        """The running Asterisk's `core show version` line."""
        return self.cli("core show version").strip()

    def remove(self) -> None:
        """Stop the instance and delete its folder (configuration, logs, state)."""
        self.stop()
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def list_labs(state_dir: Path | None = None) -> list[Lab]:
    """Every instance that has a folder under `state_dir`."""
    root = state_dir or default_state_dir()
    if not root.is_dir():
        return []
    return [Lab(entry.name, root) for entry in sorted(root.iterdir())
            if (entry / "state.json").is_file()]


def running_lab(name: str) -> Lab:
    """The lab instance `name` (in $WILDIX_AST_LAB_STATE), which must be running."""
    state = os.environ.get("WILDIX_AST_LAB_STATE")
    lab = Lab(name, Path(state) if state else None)
    if not lab.is_running():
        raise WildixError(f"lab {name!r} is not running: start it with `wildix-ast lab up`")
    return lab
