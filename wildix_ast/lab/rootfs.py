"""The lab's root filesystem: Debian sid (minbase) with Asterisk 22, built once and cached.

The host (Debian 12) has no Asterisk package; sid has Asterisk 22 built against sid's libc.
`debootstrap` makes a sid root filesystem that instances run in a chroot. It is built into a
temporary folder next to its final place and renamed there when complete, under an `fcntl`
lock, so a reader never sees half a build and two concurrent runs never both build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wildix_ast.cache import cache_dir
from wildix_ast.errors import LabError
from wildix_ast.sounds import prompts as system_sounds

SUITE = "sid"
VARIANT = "minbase"
#: Every language's system prompts are in the lab (a site of any language can run there);
#: the list is part of the cache key, so changing it builds a new root filesystem.
PACKAGES: tuple[str, ...] = ("asterisk", "asterisk-modules", "asterisk-config", "sox",
                             "ca-certificates", "asterisk-moh-opsound-gsm",
                             *system_sounds.packages(system_sounds.PACKAGED_LANGUAGES))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Where every instance's private folder is bind-mounted inside the root filesystem.
MOUNT_POINT = PurePosixPath("/srv/wildix-ast")
ASTERISK_BINARY = PurePosixPath("/usr/sbin/asterisk")
MARKER = ".wildix-ast-rootfs.json"
LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Recipe:
    """What one cached root filesystem is made of.

    `kind` is the cache subfolder: builds of one kind replace each other (the lab's and the
    booted deployment target's do not). `script` names the debootstrap script when the
    host's debootstrap does not know the suite (bookworm's has none for forky; sid's fits).
    `customize` runs on the finished tree before it is marked complete; `revision` names
    its version, so changing it rebuilds."""

    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    variant: str = VARIANT
    kind: str = "rootfs"
    script: str | None = None
    revision: str = ""
    customize: Callable[[Path], None] | None = None

    def key(self) -> str:
        """A short hash naming this build (the lab's stays what it always was)."""
        fields = [self.suite, self.variant, *sorted(self.packages)]
        if self.script or self.revision:
            fields += [f"script={self.script or ''}", f"revision={self.revision}"]
        return hashlib.sha256("\n".join(fields).encode()).hexdigest()[:12]


LAB = Recipe()


@dataclass(frozen=True)
class BuildStep:
    """One line of progress from a root filesystem build.

    `stage` is debootstrap's verb (Retrieving, Validating, Extracting, Unpacking,
    Configuring...) or one of ours (lock, reuse, build, done); `milestone` is false for the
    hundreds of per-package lines, so a renderer can print milestones and overwrite the rest.
    `elapsed` counts seconds since `ensure_rootfs` was called."""

    stage: str
    message: str
    elapsed: float
    milestone: bool

    def __str__(self) -> str:
        return f"[{self.elapsed:5.1f} s] {self.message}"


ProgressCallback = Callable[[BuildStep], None]


def rootfs_path(recipe: Recipe = LAB) -> Path:
    """Where the root filesystem of this recipe lives (built or not)."""
    return cache_dir() / recipe.kind / recipe.key()


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host already uses (deb822 `URIs:` or a one-line `deb` entry),
    skipping security and backports archives; http://deb.debian.org/debian if none."""
    candidates: list[str] = []
    deb822 = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in deb822:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = re.match(r"\s*URIs:\s*(.+)", line)
            if match:
                candidates.extend(match.group(1).split())
    one_line = [sources_dir / "sources.list",
                *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if match:
                candidates.append(match.group(1))
    for uri in candidates:
        if uri.startswith(("http://", "https://", "file:/")) and \
                not re.search(r"security|backports|ports\b|-debug", uri):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def require_root(what: str) -> None:
    """Raise unless running as root (the lab mounts, chroots and debootstraps)."""
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (mount namespaces, chroot, debootstrap): "
                       "run it as root, e.g. with sudo")


def require_tool(name: str, package: str) -> str:
    """The path of a host program the lab needs, or an error naming its Debian package."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise LabError(f"`{name}` is not installed: install the Debian package `{package}` "
                       "(apt-get install " + package + ", or run .ci/install-system-packages)")
    return found


def is_built(root: Path) -> bool:
    """True when `root` is a completed build (its marker is written last, before the rename)."""
    return (root / MARKER).is_file() and (root / ASTERISK_BINARY.relative_to("/")).is_file()


def prepare_rootfs(root: Path) -> None:
    """Folders instances need inside the root filesystem (idempotent)."""
    (root / MOUNT_POINT.relative_to("/")).mkdir(parents=True, exist_ok=True)
    # The remote console looks for the default run folder before it reads asterisk.conf.
    (root / "run" / "asterisk").mkdir(parents=True, exist_ok=True)
    for name in ("proc", "dev"):
        (root / name).mkdir(exist_ok=True)
    # A base hosts file for the root filesystem. It does not name this machine (the cache
    # is shared by machines of other names): each instance mounts its own hosts file naming
    # it (Lab.start), since Asterisk's ACL code resolves the host name for every RTP session.
    hosts = root / "etc" / "hosts"
    if not hosts.exists():
        hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                         encoding="utf-8")
    # Each instance bind-mounts its own resolv.conf here (Lab.start): the file must exist.
    resolv = root / "etc" / "resolv.conf"
    if not resolv.exists() or resolv.is_symlink():
        resolv.unlink(missing_ok=True)
        resolv.write_text("nameserver 127.0.0.1\n", encoding="utf-8")


@contextmanager
def _locked(lock_path: Path, progress: ProgressCallback, started: float) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(BuildStep("lock", f"waiting for another build ({lock_path})",
                               time.monotonic() - started, True))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip()
    except OSError:
        return "(no log)"


def _remove_tree(path: Path) -> None:
    """Delete a (failed) build folder, refusing if anything is mounted below it."""
    mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    prefix = str(path.resolve()) + "/"
    busy = [line.split()[1] for line in mounts
            if len(line.split()) > 1 and (line.split()[1] + "/").startswith(prefix)]
    if busy:
        raise LabError(f"cannot remove {path}: still mounted: {', '.join(busy)}; "
                       "unmount them (umount -R) and run again")
    shutil.rmtree(path, ignore_errors=True)


_PER_PACKAGE = re.compile(r"^I: (?:(?:Retrieving|Validating) \S+ \S+"
                          r"|(?:Extracting|Unpacking|Configuring) \S+\.\.\.)$")


def _stage_of(line: str) -> str:
    text = line[3:] if line.startswith(("I: ", "W: ", "E: ")) else line
    return text.split(" ", 1)[0].rstrip(".:") if text else ""


def _debootstrap(recipe: Recipe, target: Path, mirror: str, log_path: Path,
                 progress: ProgressCallback, started: float) -> None:
    debootstrap = require_tool("debootstrap", "debootstrap")
    unshare = require_tool("unshare", "util-linux")
    # In a private mount namespace: the proc/sys mounts debootstrap makes inside the
    # target vanish with it even when it fails or is killed.
    command = [unshare, "--mount", "--propagation", "private", "--",
               debootstrap, f"--variant={recipe.variant}",
               "--include=" + ",".join(recipe.packages), recipe.suite, str(target), mirror]
    if recipe.script:
        command.append(recipe.script)
    progress(BuildStep("build", f"debootstrap {recipe.suite} from {mirror} into {target}",
                       time.monotonic() - started, True))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace",
                                   env=env)
        assert process.stdout is not None
        for raw in process.stdout:
            log.write(raw)
            line = raw.rstrip()
            if not line:
                continue
            stage = _stage_of(line)
            progress(BuildStep(stage, line, time.monotonic() - started,
                               not _PER_PACKAGE.match(line)))
        returncode = process.wait()
    if returncode != 0:
        details = _tail(log_path, 12)
        inner = target / "debootstrap" / "debootstrap.log"
        if inner.exists():  # what dpkg and wget said, kept before the build folder goes
            kept = log_path.with_suffix(".inner.log")
            shutil.copyfile(inner, kept)
            details += f"\n--- last lines of {kept}:\n{_tail(inner, 12)}"
        raise LabError(f"debootstrap failed (exit {returncode}) building the {recipe.suite} "
                       f"root filesystem from {mirror} (check the mirror, the network, or set "
                       f"WILDIX_AST_MIRROR); full log: {log_path}\n{details}")


def ensure_rootfs(progress: ProgressCallback | None = None, *, mirror: str | None = None,
                  recipe: Recipe = LAB) -> Path:
    """The cached root filesystem, built first if missing; returns its path.

    A completed build is reused at once. Otherwise this needs root and `debootstrap`, takes
    about a minute and 530 MB, and reports each debootstrap line through `progress`. The
    Debian mirror is `mirror`, else `$WILDIX_AST_MIRROR`, else the host's own."""
    report: ProgressCallback = progress or (lambda step: None)
    started = time.monotonic()
    root = rootfs_path(recipe)
    if is_built(root):
        prepare_rootfs(root)
        report(BuildStep("reuse", f"root filesystem ready: {root}", 0.0, True))
        return root
    require_root("building the lab root filesystem")
    require_tool("debootstrap", "debootstrap")
    require_tool("unshare", "util-linux")
    parent = root.parent
    with _locked(parent / f".{root.name}.lock", report, started):
        if is_built(root):  # another process built it while we waited
            prepare_rootfs(root)
            report(BuildStep("reuse", f"root filesystem ready: {root}",
                             time.monotonic() - started, True))
            return root
        for stale in parent.glob(f".{root.name}.building-*"):
            _remove_tree(stale)  # left by an interrupted build (we hold the lock)
        if root.exists():  # incomplete without marker: not ours to trust
            _remove_tree(root)
        chosen = mirror or os.environ.get("WILDIX_AST_MIRROR") or host_mirror()
        temp = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=parent))
        log_path = parent / f"{root.name}.debootstrap.log"
        try:
            _debootstrap(recipe, temp, chosen, log_path, report, started)
            if not (temp / ASTERISK_BINARY.relative_to("/")).is_file():
                raise LabError(f"debootstrap finished but {ASTERISK_BINARY} is missing from "
                               f"the root filesystem; see {log_path}")
            prepare_rootfs(temp)
            if recipe.customize is not None:
                recipe.customize(temp)
            version = _package_version(temp, "asterisk")
            (temp / MARKER).write_text(json.dumps({
                "suite": recipe.suite, "variant": recipe.variant,
                "packages": list(recipe.packages), "revision": recipe.revision,
                "mirror": chosen, "asterisk": version,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
            temp.chmod(0o755)
            os.rename(temp, root)
        except BaseException:
            _remove_tree(temp)
            raise
    report(BuildStep("done", f"root filesystem built in {time.monotonic() - started:.0f} s "
                     f"(Asterisk {_package_version(root, 'asterisk')}): {root}",
                     time.monotonic() - started, True))
    for old in prune_other_builds(root):
        report(BuildStep("prune", f"removed the previous build {old}",
                         time.monotonic() - started, True))
    return root


def _roots_in_use() -> set[Path]:
    """Root folders of running processes (a lab instance chroots into its build)."""
    roots: set[Path] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                roots.add(Path(os.readlink(entry / "root")))
    return roots


def prune_other_builds(keep: Path) -> list[Path]:
    """Remove finished builds of other package lists (530 MB each) that no running lab
    uses, so changing the package list does not leak disk on every machine it runs on."""
    in_use = _roots_in_use()
    removed: list[Path] = []
    for other in keep.parent.iterdir():
        if other == keep or not other.is_dir() or other.name.startswith("."):
            continue
        if not is_built(other) or other in in_use:
            continue
        try:
            _remove_tree(other)
        except LabError:
            continue  # still mounted somewhere: leave it
        (other.parent / f"{other.name}.debootstrap.log").unlink(missing_ok=True)
        removed.append(other)
    return removed


def _package_version(root: Path, package: str) -> str:
    """A package's version from the root filesystem's dpkg status, or '?'."""
    try:
        status = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "?"
    for block in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", block, re.MULTILINE):
            match = re.search(r"^Version: (\S+)$", block, re.MULTILINE)
            if match:
                return match.group(1)
    return "?"


def rootfs_info(root: Path) -> dict[str, object]:
    """What the build marker recorded (suite, packages, mirror, Asterisk version, time)."""
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
