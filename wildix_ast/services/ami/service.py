"""The AMI service (`wildix-ast runtime serve`): one supervised AMI connection feeding the
live PBX state, the per-call event log and the security-event counter with its bans.

It keeps its files in a state folder, for the commands a person runs from another process:

* `status.json`: connection, Asterisk version, devices, contacts, channels, bans; rewritten
  every `status_interval` seconds (its age tells whether the service runs);
* `calls.jsonl` (+ `calls.jsonl.1`): every channel event, one JSON line each;
* `bans.json`: the bans in force, kept across restarts; the service and `unban` change it
  by locked read-modify-writes (`ban_file`), and the service picks others' changes up.

Its firewall chain is removed when it is stopped (SIGTERM, SIGINT): a stopped service can
no longer expire bans, so leaving them enforced would keep them forever (iptables rules
outlive the process, and a disabled or removed service would leave them to the next
reboot). The bans themselves stay in `bans.json` and are enforced again in the first second
of the next start, before the AMI connection: a restart leaves banned addresses a window of
about the interpreter's start-up. A crash or a watchdog kill leaves the chain in place (the
unit restarts the service, which rewrites it), as does any exit but a requested stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildix_ast.ami import AmiClient, AmiMessage
from wildix_ast.errors import AmiError, ServiceError
from wildix_ast.services.ami.ban_file import (
    BANS_FILE,
    Bans,
    bans_lock,
    firewall_lock,
    load_bans,
    update_bans,
)
from wildix_ast.services.ami.call_log import CallLog, LoggedEvent, LogWriter, wanted
from wildix_ast.services.ami.firewall import Firewall
from wildix_ast.services.ami.pbx_state import PbxState, apply_event, snapshot
from wildix_ast.services.ami.popup_http import PopupHttpSettings, PopupNotifier, UserLookup
from wildix_ast.services.ami.security import (
    BanPolicy,
    SecurityState,
    active_bans,
    enforceable,
    expire,
    is_attempt,
    record_event,
)
from wildix_ast.services.ami.supervisor import AmiSettings, AmiSupervisor

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
CALLS_FILE = "calls.jsonl"


@dataclass(frozen=True)
class ServiceConfig:
    ami: AmiSettings
    state_dir: Path
    policy: BanPolicy = BanPolicy()
    status_interval: float = 1.0
    #: Where bans are enforced (None: counted and listed only).
    firewall: Firewall | None = None
    #: The users by extension, for popups notified by HTTP (None: none is sent).
    popup_lookup: UserLookup | None = None
    popup_http: PopupHttpSettings = PopupHttpSettings()
    #: For a service of a lab instance: whether that instance is down. Down for
    #: `gone_grace` seconds (longer than a restart) while the AMI is cut, the service stops
    #: as if asked; meanwhile it leaves the firewall alone (`lab down` removes the chain).
    served_gone: Callable[[], bool] | None = None
    gone_grace: float = 10.0


async def _optional_list(client: AmiClient, name: str, complete: str,
                         empty_messages: tuple[str, ...] = ()) -> list[AmiMessage]:
    try:
        return await client.action_list(name, complete, timeout=client.bulk_timeout,
                                        empty_messages=empty_messages)
    except AmiError as e:
        if "Invalid/unknown command" in e.message:
            log.warning("Asterisk has no %s action (module not loaded): %s", name, e.message)
            return []
        if "Permission denied" in e.message:
            # The least-privilege account has no `system` write class (it would allow
            # GetConfig): contacts then come from ContactStatus events only.
            log.info("%s not allowed to this AMI account; skipped", name)
            return []
        raise


async def _asterisk_version(client: AmiClient) -> str:
    """Asterisk's own version (CoreSettings, `reporting` class); the AMI banner gives only
    the manager protocol's (11.0.0 on Asterisk 22)."""
    try:
        settings = await client.action("CoreSettings")
    except AmiError:
        return f"AMI {client.version or '?'}"
    return settings.get("AsteriskVersion", "") or f"AMI {client.version or '?'}"


class MonitorService:
    def __init__(self, config: ServiceConfig, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.config = config
        self.clock = clock
        self.state = PbxState()
        self.security = SecurityState(bans=load_bans(config.state_dir))
        self.calls = CallLog()
        self.events_seen = 0
        self._bans_mtime = self._mtime()
        self._buffer: list[AmiMessage] | None = None
        self._resnapshot_task: asyncio.Task[None] | None = None
        self._snapshot_lock = asyncio.Lock()
        self._writer: LogWriter | None = None
        self._wake = asyncio.Event()
        #: What the firewall drops now (None: not written yet since start).
        self.enforced: frozenset[str] | None = None
        self.enforce_error = ""
        self._enforce_retry = 0.0  # after a failure, not before this time (monotonic)
        self._stopping = False  # a requested stop (not a crash): the chain is removed
        self._gone_since: float | None = None  # monotonic time the served lab was seen down
        self.popups = PopupNotifier(config.popup_lookup, config.popup_http) \
            if config.popup_lookup is not None else None
        self.supervisor = AmiSupervisor(config.ami, on_event=self.on_event,
                                        on_connect=self._on_connect,
                                        on_disconnect=self._on_disconnect)

    # -- events --------------------------------------------------------------------------

    def on_event(self, event: AmiMessage) -> None:
        self.events_seen += 1
        now = self.clock()
        if event.get("Event") == "FullyBooted":
            self._resnapshot()
        if self._buffer is not None:
            self._buffer.append(event)  # applied on top of the snapshot being taken
        else:
            self.state = apply_event(self.state, event)
        if wanted(event):
            logged = LoggedEvent(now, event)
            self.calls.add(logged)
            if self._writer is not None:
                self._writer.write(logged)
        if self.popups is not None:
            self.popups.on_event(event)
        if is_attempt(event):
            self.security, ban = record_event(self.security, self.config.policy, event, now)
            if ban is not None:
                log.warning("banned %s for %g s after %d attempts in %g s (%s)", ban.address,
                            self.config.policy.ban_time, ban.attempts,
                            self.config.policy.window, ban.reason)
                self._change_bans(lambda bans: {**bans, ban.address: ban})

    async def _on_connect(self, client: AmiClient) -> None:
        async with self._snapshot_lock:  # the FullyBooted re-snapshot waits for this one
            await self._snapshot(client)

    async def _snapshot(self, client: AmiClient) -> None:
        self._buffer = []
        try:
            # Each list needs its module (res_manager_devicestate, res_pjsip); a PBX without
            # one shows nothing there rather than no state at all.
            devices = await _optional_list(client, "DeviceStateList", "DeviceStateListComplete")
            contacts = await _optional_list(client, "PJSIPShowContacts", "ContactListComplete",
                                            empty_messages=("No Contacts found",))
            channels = await client.action_list("CoreShowChannels", "CoreShowChannelsComplete")
            state = snapshot(await _asterisk_version(client), devices, contacts, channels)
            for event in self._buffer:
                state = apply_event(state, event)
            self.state = state
        finally:
            self._buffer = None

    def _resnapshot(self) -> None:
        """Asterisk's AMI accepts logins while it still loads modules: a snapshot taken
        then misses what later modules list (device states). FullyBooted says the boot is
        over (it also comes to sessions opened after boot; a second snapshot is harmless)."""
        client = self.supervisor.client
        if client is None or self._resnapshot_task is not None:
            return

        async def again() -> None:
            try:
                await self._on_connect(client)
            except AmiError as e:
                log.warning("AMI snapshot after FullyBooted failed: %s", e.message)
            finally:
                self._resnapshot_task = None

        self._resnapshot_task = asyncio.get_running_loop().create_task(again())

    def _on_disconnect(self, _reason: str) -> None:
        # Nothing known about a PBX we cannot see: no stale channels or phones shown green.
        self.state = PbxState()

    # -- files ---------------------------------------------------------------------------

    def _mtime(self) -> float:
        try:
            return (self.config.state_dir / BANS_FILE).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _change_bans(self, change: Callable[[Bans], Bans]) -> None:
        """Apply `change` to the file's bans (not to this process's copy, which may miss an
        `unban` made since it last read them) and adopt the result."""
        bans = update_bans(self.config.state_dir, change)
        self._bans_mtime = self._mtime()
        self._adopt(bans)

    def _follow_ban_file(self) -> None:
        """Pick up an `unban` done by another process."""
        if self._mtime() == self._bans_mtime:
            return
        with bans_lock(self.config.state_dir):
            bans = load_bans(self.config.state_dir)
            self._bans_mtime = self._mtime()
        self._adopt(bans)

    def _expire(self, now: float) -> None:
        if any(b.until <= now for b in self.security.bans.values()):
            self._change_bans(lambda bans: {a: b for a, b in bans.items() if b.until > now})
        self.security = expire(self.security, self.config.policy, now)

    def _adopt(self, bans: Bans) -> None:
        # an address unbanned elsewhere starts counting afresh, as `unban` says
        attempts = {a: t for a, t in self.security.attempts.items() if a in bans or
                    a not in self.security.bans}
        self.security = SecurityState(attempts=attempts, bans=bans)

    def status(self) -> dict[str, Any]:
        supervisor = self.supervisor
        now = self.clock()
        return {
            "service": "wildix-ast runtime",
            "pid": os.getpid(),
            "updated": now,
            "ami": {"address": supervisor.settings.where, "connected": supervisor.connected,
                    "connected_since": supervisor.connected_since,
                    "connections": supervisor.connections,
                    "last_error": supervisor.last_error},
            "events": self.events_seen,
            "pbx": self.state.to_json(),
            "bans": [b.to_json() for b in active_bans(self.security, now)],
            "enforcement": {
                "kind": "iptables" if self.config.firewall else "none",
                "chain": self.config.firewall.chain if self.config.firewall else "",
                # what `security unban` needs to rewrite the chain while the service is down
                "ports": list(self.config.firewall.ports) if self.config.firewall else [],
                "plain_ports": list(self.config.firewall.plain_ports)
                if self.config.firewall else [],
                "plain_from": [str(n) for n in self.config.firewall.plain_from]
                if self.config.firewall else [],
                "enforced": sorted(self.enforced or ()),
                "error": self.enforce_error,
            },
            "popup_http": self.popups.status() if self.popups is not None else None,
        }

    def write_status(self) -> None:
        # Renamed into place but not fsynced: it is rewritten every second, and an fsync
        # stalling the loop past Asterisk's 100 ms writetimeout would cost the AMI session.
        path = self.config.state_dir / STATUS_FILE
        temp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(self.status(), indent=2) + "\n", encoding="utf-8")
        # owner-only: the state folder is the bans group's too (the provisioning server
        # writes bans.json there), and the status names callers
        os.chmod(temp, 0o600)
        os.replace(temp, path)

    # -- running -------------------------------------------------------------------------

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._writer = LogWriter(self.config.state_dir / CALLS_FILE)
        connection = asyncio.create_task(self.supervisor.run())
        if ready is not None:
            ready()
        try:
            while not connection.done():
                self._wake.clear()  # a ban from here on wakes the next round at once
                self._follow_ban_file()
                self._expire(self.clock())
                if self._served_gone():
                    log.warning("the served lab has been down for %.0f s: stopping",
                                self.config.gone_grace)
                    self.stop()
                    break
                if self._gone_since is None:
                    await self._enforce()
                self._writer.flush()
                self.write_status()
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({connection, wake}, timeout=self.config.status_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
        finally:
            self.supervisor.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await connection
            self._writer.close()
            self._writer = None
            if self.popups is not None:
                await self.popups.close()
            if self._stopping:
                await self._remove_firewall()
            self.write_status()

    def stop(self) -> None:
        self._stopping = True
        self.supervisor.stop()

    def _served_gone(self) -> bool:
        """The served lab is down for good (see ServiceConfig.served_gone)."""
        check = self.config.served_gone
        if check is None or self.supervisor.connected or not check():
            self._gone_since = None
            return False
        if self._gone_since is None:
            self._gone_since = time.monotonic()
        return time.monotonic() - self._gone_since >= self.config.gone_grace

    async def _remove_firewall(self) -> None:
        firewall = self.config.firewall
        if firewall is None:
            return

        def remove() -> bool:
            with firewall_lock(self.config.state_dir):
                return firewall.remove()

        try:
            removed = await asyncio.to_thread(remove)
        except ServiceError as e:
            log.error("stopping: the firewall chain %s stays in place: %s", firewall.chain,
                      e.message)
            self.enforce_error = e.message
            return
        if removed:
            log.warning("stopping: firewall chain %s removed (the bans stay in %s and are "
                        "enforced again when the service starts)", firewall.chain, BANS_FILE)
        self.enforced = None

    async def _enforce(self) -> None:
        """Make the firewall drop exactly the bans in force (a no-op when unchanged)."""
        firewall = self.config.firewall
        if firewall is None:
            return
        networks = enforceable(self.security, self.config.policy, self.clock())
        wanted_now = frozenset(str(n.network_address) for n in networks)
        if wanted_now == self.enforced or time.monotonic() < self._enforce_retry:
            return

        def apply() -> None:
            with firewall_lock(self.config.state_dir):
                firewall.apply(networks)

        try:
            # iptables takes tens of milliseconds: off the loop, whose AMI session Asterisk
            # drops after 100 ms without reading.
            await asyncio.to_thread(apply)
        except ServiceError as e:
            if e.message != self.enforce_error:
                log.error("%s", e.message)
            self.enforce_error = e.message
            self._enforce_retry = time.monotonic() + 10  # a missing iptables stays missing
            return
        before: frozenset[str] = self.enforced or frozenset()
        lifted = before - wanted_now
        if wanted_now != before:
            log.warning("firewall chain %s: dropping %s%s", firewall.chain,
                        ", ".join(sorted(wanted_now)) or "nothing",
                        f" (lifted {', '.join(sorted(lifted))})" if lifted else "")
        self.enforced = wanted_now
        self.enforce_error = ""


def last_status(state_dir: Path) -> dict[str, Any]:
    """The service's last status, however old (also after it stopped); ServiceError if
    there is none."""
    path = state_dir / STATUS_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServiceError(f"no AMI service status in {state_dir}: is `wildix-ast runtime "
                           "serve` running with this --state-dir?") from None
    except ValueError as e:
        raise ServiceError(f"{path} is not a status file: {e}") from None
    return data


def read_status(state_dir: Path, max_age: float = 15.0) -> dict[str, Any]:
    """The service's last status; ServiceError if there is none or it is stale."""
    data = last_status(state_dir)
    age = time.time() - float(data.get("updated", 0))
    if age > max_age:
        raise ServiceError(f"the AMI service's status in {state_dir} is {age:.0f} s old: "
                           "the service is not running (or hung)")
    return data
