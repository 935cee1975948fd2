"""A long-lived AMI connection that re-makes itself.

`AmiClient` (wildix_ast.ami) fails loudly and never reconnects behind its caller's back;
this is the caller that does: it connects, hands every event to the service, checks the
connection's health (the client's heartbeat turns a hung Asterisk, no Pong, into an
unhealthy client), and on any loss closes and connects again with a short, capped backoff.
After each (re)connection `on_connect` rebuilds what the service knows from Asterisk, so
state never survives a restart of Asterisk as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wildix_ast.ami import AmiClient, AmiMessage
from wildix_ast.errors import AmiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str
    timeout: float = 2.0      # per action, login included
    heartbeat: float = 1.0    # ping interval: a hung Asterisk is found in ~heartbeat+timeout

    def client(self) -> AmiClient:
        return AmiClient(self.host, self.port, self.username, self.secret,
                         timeout=self.timeout, heartbeat=self.heartbeat, events=True)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class AmiSupervisor:
    """Keeps one AMI session up; `run()` until `stop()`."""

    def __init__(self, settings: AmiSettings, *,
                 on_event: Callable[[AmiMessage], None],
                 on_connect: Callable[[AmiClient], Awaitable[None]],
                 on_disconnect: Callable[[str], None] | None = None,
                 first_retry: float = 0.2, max_retry: float = 1.0,
                 check_interval: float = 0.1,
                 client_factory: Callable[[], AmiClient] | None = None) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._check_interval = check_interval
        self._factory = client_factory or settings.client
        self._stop = asyncio.Event()
        self.client: AmiClient | None = None
        self.connected_since: float | None = None
        self.connections = 0
        self.last_error = ""

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.healthy and \
            self.connected_since is not None

    def stop(self) -> None:
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def run(self) -> None:
        delay = self._first_retry
        while not self._stop.is_set():
            client = self._factory()
            try:
                await client.connect()
                client.on_event("*", self._on_event)
                await self._on_connect(client)
            except Exception as e:
                # AmiError is the expected case; anything else is a bug in on_connect, and a
                # bug must not end the service's connection for good either.
                if not isinstance(e, AmiError):
                    log.exception("AMI on_connect failed")
                reason = e.message if isinstance(e, AmiError) else f"{type(e).__name__}: {e}"
                await self._drop(client, reason)
                await self._pause(delay)
                delay = min(delay * 2, self._max_retry)
                continue
            self.client = client
            self.connected_since = time.time()
            self.connections += 1
            delay = self._first_retry
            log.info("AMI connected to %s (connection %d)", self.settings.where,
                     self.connections)
            while client.healthy and not self._stop.is_set():
                await self._pause(self._check_interval)
            reason = client.problem.message if client.problem else "closed"
            await self._drop(client, reason)
        self.client = None

    async def _drop(self, client: AmiClient, reason: str) -> None:
        was_connected = self.connected_since is not None and client is self.client
        self.connected_since = None
        self.client = None
        if was_connected and self._on_disconnect is not None:
            self._on_disconnect(reason)  # before any await: nobody sees stale state
        if reason != self.last_error or was_connected:
            log.error("AMI %s: %s", self.settings.where, reason)
        self.last_error = reason
        with contextlib.suppress(AmiError):
            await client.close()
