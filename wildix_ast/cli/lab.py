"""`wildix-ast lab ...`: build the root filesystem, start, inspect and stop lab instances."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from wildix_ast.cli.console import emit_json, err, mode, out
from wildix_ast.errors import LabError, ServiceError
from wildix_ast.lab.instance import DEFAULT_NAME, Lab, default_state_dir, list_labs
from wildix_ast.lab.ports import RTP_COUNT, RTP_OFFSET, LabPorts
from wildix_ast.lab.rootfs import BuildStep, ensure_rootfs, rootfs_info

app = typer.Typer(help="The live Asterisk 22 lab: a cached Debian sid root filesystem and "
                       "instances running in private mount namespaces (needs root).",
                  no_args_is_help=True)

#: Called by `lab up` (when no --config is given) to write the instance's configuration
#: into `lab.etc_dir`; the main CLI sets it to render the site. See `set_configurator`.
Configurator = Callable[[Lab], None]
_configurator: Configurator | None = None

#: Placeholders replaced in text files copied by `lab up --config DIR`.
PLACEHOLDERS = ("@SIP_PORT@", "@AMI_PORT@", "@RTP_START@", "@RTP_END@", "@HOST@")

Name = Annotated[str, typer.Option("--name", "-n", help="Instance name.")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="WILDIX_AST_LAB_STATE", show_envvar=True,
    help="Folder of the lab instances' files. Default: ~/.local/state/wildix-ast/lab.")]


def set_configurator(configure: Configurator | None) -> None:
    """Make `lab up` (without --config) write configuration with `configure(lab)`."""
    global _configurator
    _configurator = configure


class BuildProgress:
    """Renders `ensure_rootfs` progress: milestones as lines, the rest on a spinner."""

    def __init__(self) -> None:
        self.status: Status | None = None

    def __call__(self, step: BuildStep) -> None:
        if step.milestone and step.stage != "reuse":
            err.print(f"[dim]{step.elapsed:6.1f} s[/] {escape(step.message)}")
        if step.stage in ("reuse", "done"):
            self.close()
            return
        if self.status is None:
            self.status = err.status("", spinner="dots")
            self.status.start()
        self.status.update(f"[dim]{step.elapsed:6.1f} s[/] {escape(step.message)}")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def build_rootfs() -> Path:
    """ensure_rootfs with rich progress on standard error."""
    progress = BuildProgress()
    try:
        return ensure_rootfs(progress)
    finally:
        progress.close()


def copy_config(source: Path, lab: Lab) -> list[str]:
    """Replace `lab.etc_dir`'s contents by the files of `source`, substituting the lab's
    ports for @SIP_PORT@, @AMI_PORT@, @RTP_START@, @RTP_END@ and @HOST@ in text files."""
    if not source.is_dir():
        raise LabError(f"--config {source}: not a folder of Asterisk configuration files")
    etc = lab.etc_dir
    for entry in etc.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    ports = lab.ports
    values = dict(zip(PLACEHOLDERS, (str(ports.sip), str(ports.ami), str(ports.rtp_start),
                                     str(ports.rtp_end), ports.host), strict=True))
    copied = []
    for path in sorted(source.rglob("*")):
        target = etc / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
        else:
            for key, value in values.items():
                text = text.replace(key, value)
            target.write_text(text, encoding="utf-8")
        copied.append(str(path.relative_to(source)))
    return copied


def up_lab(name: str = DEFAULT_NAME, state_dir: Path | None = None, *,
           config_dir: Path | None = None, configure: Configurator | None = None,
           ports: LabPorts | None = None, timeout: float = 30.0) -> Lab:
    """Build the root filesystem if needed, write the configuration (copied from
    `config_dir`, else written by `configure` or the registered configurator, else whatever
    is already in etc_dir) and start the instance."""
    build_rootfs()
    lab = Lab(name, state_dir, ports=ports)
    if lab.is_running():
        raise LabError(f"lab {name!r} is already running (pid {lab.pid}); "
                       "`wildix-ast lab down` first")
    if config_dir is not None:
        copy_config(config_dir, lab)
    else:
        writer = configure or _configurator
        if writer is not None:
            writer(lab)
    lab.start(timeout=timeout)
    # A chain left for this SIP port by a lab whose down never ran (a killed test run)
    # would silently drop some loopback addresses' packets to the new instance.
    remove_ban_chain(lab)
    return lab


def remove_ban_chain(lab: Lab, ports: LabPorts | None = None) -> str:
    """Remove the firewall chain (and its jump from INPUT) that an AMI service serving this
    lab (`runtime serve --lab`) may have left: that service removes it when stopped, not
    when killed. `ports`: the lab's (default: its saved ones). The chain's name, when one
    was removed, else ''."""
    from wildix_ast.services.ami.firewall import Firewall, lab_chain

    ports = ports or lab.saved_ports
    if ports is None:
        return ""
    firewall = Firewall((ports.sip,), lab_chain(ports.sip))
    try:
        return firewall.chain if firewall.remove() else ""
    except ServiceError as e:
        raise LabError(f"lab {lab.name!r}: its SIP bans' firewall chain {firewall.chain} "
                       f"cannot be removed: {e.message}") from None


def down_lab(name: str = DEFAULT_NAME, state_dir: Path | None = None, *,
             remove: bool = False) -> tuple[bool, str]:
    """Stop a lab instance (and delete its folder with `remove`) and remove what the
    project added to the host's firewall for it: (whether it was running, the chain
    removed or '')."""
    lab = Lab(name, state_dir)
    was_running, ports = lab.is_running(), lab.saved_ports  # before --remove deletes them
    try:
        if remove:
            lab.remove()
        else:
            lab.stop()
    finally:
        # also when stopping failed: the instance is gone or not, the chain is ours alone
        chain = remove_ban_chain(lab, ports)
    return was_running, chain


@app.command()
def build() -> None:
    """Build the cached Debian sid root filesystem with Asterisk 22 (once; ~1 min, 530 MB)."""
    root = build_rootfs()
    info = rootfs_info(root)
    out.print(f"[green]✓[/] root filesystem {root} (Asterisk {info.get('asterisk', '?')})")


@app.command()
def up(
    name: Name = DEFAULT_NAME,
    state_dir: StateDir = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Folder of Asterisk configuration files to copy into the instance "
        "(replacing its etc); @SIP_PORT@, @AMI_PORT@, @RTP_START@, @RTP_END@ and @HOST@ are "
        "replaced by the instance's values.")] = None,
    sip_port: Annotated[int | None, typer.Option(
        help="Fixed SIP port (UDP and TCP) instead of a random free one.")] = None,
    ami_port: Annotated[int | None, typer.Option(
        help="Fixed AMI port (default with --sip-port: SIP port + 1).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Asterisk to boot.")]
    = 30.0,
) -> None:
    """Start a lab instance (building the root filesystem first if needed)."""
    ports = None
    if sip_port is not None or ami_port is not None:
        sip = sip_port if sip_port is not None else (ami_port or 0) - 1
        ports = LabPorts(sip=sip, ami=ami_port if ami_port is not None else sip + 1,
                         rtp_start=sip + RTP_OFFSET, rtp_end=sip + RTP_OFFSET + RTP_COUNT - 1)
    started = time.monotonic()
    lab = up_lab(name, state_dir, config_dir=config, ports=ports, timeout=timeout)
    out.print(f"[green]✓[/] lab {name!r} up in {time.monotonic() - started:.1f} s: "
              f"pid {lab.pid}, {lab.ports}")
    out.print(f"  configuration: {lab.etc_dir}\n  output: {lab.log_path}")


@app.command()
def down(name: Name = DEFAULT_NAME, state_dir: StateDir = None,
         remove: Annotated[bool, typer.Option(
             "--remove", help="Also delete the instance's folder (configuration, logs).")]
         = False) -> None:
    """Stop a lab instance (gracefully, then by signal); its mounts vanish with it, and so
    does the SIP bans' firewall chain of an AMI service that served it."""
    was_running, chain = down_lab(name, state_dir, remove=remove)
    out.print(f"[green]✓[/] lab {name!r} " + ("stopped" if was_running else "was not running")
              + (", files removed" if remove else "")
              + (f", firewall chain {chain} removed" if chain else ""))


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


@app.command()
def status(name: Annotated[str | None, typer.Option(
               "--name", "-n", help="Only this instance (default: all).")] = None,
           state_dir: StateDir = None,
           as_json: Annotated[bool, typer.Option(
               "--json", help="One JSON object on standard output.")] = False) -> None:
    """Show the lab instances: running?, pid, ports, uptime, Asterisk version."""
    labs = [Lab(name, state_dir)] if name else list_labs(state_dir)
    if as_json:
        mode.json = True
        emit_json({"ok": True, "labs": [_status_json(lab) for lab in labs]})
        return
    if not labs:
        out.print(f"no lab instance under {state_dir or default_state_dir()}")
        return
    table = Table(title="wildix-ast lab (ports on 127.0.0.1)")
    for column in ("name", "running", "pid", "SIP", "AMI", "RTP", "uptime", "Asterisk"):
        table.add_column(column)
    for lab in labs:
        state = _status_json(lab)
        ports = lab.saved_ports
        seconds = state["uptime_seconds"]
        version = str(state["asterisk"] or "")
        table.add_row(lab.name, "[green]yes[/]" if state["running"] else "[dim]no[/]",
                      str(state["pid"] or ""),
                      str(ports.sip) if ports else "", str(ports.ami) if ports else "",
                      f"{ports.rtp_start}-{ports.rtp_end}" if ports else "",
                      _uptime(seconds) if isinstance(seconds, float) else "",
                      f"[red]{escape(version)}[/]" if version.startswith("unknown")
                      else escape(version))
    out.print(table)


def _status_json(lab: Lab) -> dict[str, object]:
    running = lab.is_running()
    version: str | None = None
    if running:
        try:
            version = lab.version().split(" built ")[0].removeprefix("Asterisk ")
        except LabError as error:
            version = f"unknown: {error.message}"
    ports = lab.saved_ports
    started_at = lab.started_at if running else None
    return {"name": lab.name, "running": running, "pid": lab.pid if running else None,
            "ports": ports.to_json() if ports else None, "etc_dir": str(lab.etc_dir),
            "uptime_seconds": round(time.time() - started_at, 1) if started_at else None,
            "asterisk": version}


@app.command("cli")
def cli_(command: Annotated[str, typer.Argument(help="An Asterisk console command, e.g. "
                                                "'core show channels'.")],
         name: Name = DEFAULT_NAME, state_dir: StateDir = None) -> None:
    """Run one Asterisk console command in a lab instance and print its output."""
    print(Lab(name, state_dir).cli(command), end="")


__all__ = ["Configurator", "app", "build_rootfs", "copy_config", "down_lab",
           "remove_ban_chain", "set_configurator", "up_lab"]
