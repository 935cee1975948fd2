"""systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=...) without a dependency.

Under a unit with `Type=notify` and `WatchdogSec=`, a service whose event loop stalls stops
sending WATCHDOG=1 and systemd restarts it. For FastAGI this matters: Asterisk 22 waits for
an accepted AGI connection without any time limit, so a hung (not dead) server would hold
calls; a killed one closes its sockets and every waiting call takes its fallback at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable


def notify(message: str) -> bool:
    """Send one notification; False when not run by systemd (no NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the unit's WatchdogSec, in seconds, if this process is the one watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    with contextlib.suppress(ValueError):
        return int(usec) / 2_000_000
    return None


#: What a health check returns: None when healthy, else why not (shown as the unit's STATUS).
HealthCheck = Callable[[], Awaitable[str | None]]


async def keep_alive(check: HealthCheck | None = None, *, ready_status: str = "") -> None:
    """Ping systemd's watchdog from the event loop for as long as the loop runs freely and
    `check` finds nothing wrong. A failing check withholds the ping (systemd then restarts
    the service and counts it) and sets the unit's STATUS to the reason, so a broken
    dependency shows in `systemctl status`, not only a stalled loop."""
    interval = watchdog_interval()
    if interval is None:
        return
    failing = False
    while True:
        problem = None if check is None else await check()
        if problem is None:
            notify("WATCHDOG=1" + (f"\nSTATUS={ready_status}" if failing else ""))
        else:
            notify(f"STATUS={problem}")
        failing = problem is not None
        await asyncio.sleep(interval)
