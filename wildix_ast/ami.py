"""Asterisk Manager Interface client: panoramisk 1.4 with timeouts and health checks.

panoramisk 1.4 is kept for what it does well (TCP connection through `Manager.connect`,
message parsing with `Message.from_line`, action serialisation and ActionIDs with `Action`,
event dispatch with `register_event`). Its defects on Python 3.11 (see /work/shared/NOTES.md)
are worked around here, each where it happens:

* D1 "actions sent while Asterisk is down never resolve, even after reconnect": our actions
  are not kept in panoramisk's `responses` table (which re-queues them for a resend after a
  reconnect); they live in `AmiClient._pending`, every wait is bounded by a timeout, and a
  lost connection fails every pending action at once with `AmiError`. There is no silent
  reconnect: a client that lost its Asterisk says so instead of waiting for it.
* D2 "Ping replies are never checked": `Manager.ping` is replaced; the client's heartbeat sends
  `Ping`, waits for the `Pong` with a timeout, and on silence marks the connection broken,
  closes it and fails the pending actions. Only one ping is in flight at a time.
* D3 "iterating a multi-response action polls every 100 ms": list actions are collected by
  ActionID and resolved by the very message that ends them (the `...Complete` event named
  by the caller), or by the error response; no polling. (1.4's own `as_list=True` future
  also never resolves when the action is answered with an error: avoided the same way.)
* D4 (found here) `AMIProtocol.data_received` decodes every TCP chunk on its own with
  `errors='ignore'`: a UTF-8 character split across two reads (a French caller name) is
  silently dropped. `_AmiProtocol` decodes with an incremental decoder.
* D5 (found here) failed logins and refused connections make `Manager` retry forever in the
  background (`call_later(reconnect_timeout, connect)`) while the caller is never told; here
  both raise `AmiError` naming the user and host:port.
* D6 (found here) panoramisk writes field values as given: a value containing CR/LF would
  inject AMI headers. `AmiClient` rejects such values.

Asterisk drops a client that does not read for `writetimeout` (100 ms by default), so the
client logs in with `Events: off` unless events are asked for.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.errors import AmiError

log = logging.getLogger(__name__)

T = TypeVar("T")
FieldValue = str | int | Sequence[str]
AmiMessage = dict[str, str]
EventCallback = Callable[[AmiMessage], None]

_EOM = "\r\n\r\n"


def _as_dict(message: Any) -> AmiMessage:
    """A panoramisk `Message` as a plain dict; repeated headers joined with newlines."""
    out: AmiMessage = {}
    for key, value in message.items():
        if key == "content" and not value:
            continue
        out[key] = "\n".join(value) if isinstance(value, list) else str(value)
    return out


def _header(message: Any, name: str) -> str:
    value = message.get(name, "")
    return "\n".join(value) if isinstance(value, list) else str(value)


@dataclass
class _Pending:
    """One action waiting for its answer (a response, or a response plus a list of events)."""

    name: str
    future: asyncio.Future[list[Any]]
    complete_event: str | None = None
    messages: list[Any] = field(default_factory=list)

    def feed(self, message: Any) -> bool:
        """Take one message carrying our ActionID; True when the action is answered."""
        if self.future.done():
            return True
        self.messages.append(message)
        if self.complete_event is None:
            if "response" in message:
                self.future.set_result(self.messages)
                return True
            return False
        if len(self.messages) == 1 and "response" in message:
            if _header(message, "Response") != "Success":
                self.future.set_result(self.messages)  # an error ends a list action too
                return True
            return False
        if _header(message, "Event").lower() == self.complete_event.lower():
            self.future.set_result(self.messages)
            return True
        return False


class _AmiProtocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with incremental UTF-8 decoding (D4), routing our ActionIDs to
    `AmiClient._pending` before panoramisk's own table (D1, D3)."""

    client: AmiClient | None = None
    version: str | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def data_received(self, data: bytes) -> None:
        self._buffer += self._decoder.decode(data)
        if self.version is None and self._buffer.startswith("Asterisk Call Manager/"):
            first, _, _ = self._buffer.partition("\r\n")
            self.version = first.partition("/")[2].strip()
        *blocks, self._buffer = self._buffer.split(_EOM)
        for block in blocks:
            message = Message.from_line(block.strip())
            if message is not None:
                self.handle_message(message)

    def handle_message(self, message: Any) -> None:
        client = self.client
        if client is not None and client._route(message):
            return
        super().handle_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.client._lost(exc)
        super().connection_lost(exc)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its background reconnect loop (D1, D5) and without its
    unchecked pinger (D2); the login is done by `AmiClient` with a timeout."""

    protocol: Any

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(**config)
        self._client = client

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the awaiting AmiClient reports it; no retry behind the caller's back
        _transport, protocol = f.result()
        if self.protocol is protocol:
            return
        self.protocol = protocol
        protocol.factory = self
        protocol.client = self._client
        protocol.log = self.log
        protocol.config = self.config
        protocol.encoding = self.encoding = self.config["encoding"]
        self.responses = protocol.responses = {}
        self._connected = True

    def connection_lost(self, exc: Any) -> None:
        self._connected = False  # no reconnect: the client fails its pending actions

    def ping(self) -> None:  # never scheduled by us; AmiClient._heartbeat checks pongs
        return None


class AmiClient(CliQueries):
    """One AMI session, as an async context manager.

    Every action waits at most `timeout` seconds; a closed port, a refused login, a hung
    Asterisk (no answer, or no Pong within `timeout` of a heartbeat ping) and a lost
    connection all raise `AmiError`. Set `heartbeat=None` to send no periodic ping.
    """

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 timeout: float = 5.0, heartbeat: float | None = 10.0,
                 events: bool = False, bulk_timeout: float = 120.0) -> None:
        # Quick actions answer in milliseconds, but a module reload or a listing grows with
        # the site: 10,000 endpoints take 2-5 s each on two loaded cores, so they get their
        # own, larger limit (still finite: a hung Asterisk is reported, never waited for).
        self.bulk_timeout = bulk_timeout
        self._heartbeat_stop = False
        self.host = host
        self.port = port
        self.username = username
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.version: str | None = None
        self._secret = secret
        self._events = events
        self._pending: dict[str, _Pending] = {}
        self._broken: AmiError | None = None
        self._manager: _Manager | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def healthy(self) -> bool:
        """Connected, logged in, and not found hung by the heartbeat."""
        return self._manager is not None and self._broken is None and not self._closing

    @property
    def problem(self) -> AmiError | None:
        """Why the connection became unusable (lost, hung), if it did."""
        return self._broken

    # -- connection --------------------------------------------------------------------

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._broken = None
        self._closing = False
        manager = _Manager(self, host=self.host, port=self.port, loop=loop,
                           protocol_factory=_AmiProtocol, log=log,
                           events="on" if self._events else "off")
        task = manager.connect()
        try:
            async with asyncio.timeout(self.timeout):
                await task
        except TimeoutError:
            raise AmiError(f"no TCP answer from the AMI at {self.where} within "
                           f"{self.timeout:g} s") from None
        except OSError as e:
            reason = e.strerror or str(e)
            raise AmiError(f"cannot connect to the AMI at {self.where}: {reason}") from None
        manager.connection_made(task)  # idempotent; panoramisk's done callback may run later
        self._manager = manager
        try:
            reply = await self._request("Login", {
                "Username": self.username, "Secret": self._secret,
                "Events": "on" if self._events else "off"}, None, self.timeout)
        except AmiError as e:
            error = AmiError(f"the AMI at {self.where} accepted the connection but did not "
                             f"complete the login of user {self.username}: {e.message}")
            self._broken = error  # no Logoff to a server that does not answer
            await self.close()
            raise error from None
        if _header(reply[0], "Response") != "Success":
            error = AmiError(f"AMI refused the login for user {self.username} at {self.where}")
            self._broken = error
            await self.close()
            raise error
        self.version = manager.protocol.version
        if self.heartbeat:
            self._heartbeat_stop = False
            self._heartbeat_task = asyncio.create_task(self._beat(self.heartbeat))

    async def close(self) -> None:
        """Log off (briefly) and close; pending actions fail with AmiError."""
        if self._heartbeat_task is not None:
            self._heartbeat_stop = True
            self._heartbeat_task.cancel()
            # Bounded: closing must never wait on a task that failed to see its cancellation.
            await asyncio.wait({self._heartbeat_task}, timeout=1.0)
            self._heartbeat_task = None
        manager, self._manager = self._manager, None
        if manager is None:
            return
        if self._broken is None and manager.protocol is not None:
            self._manager = manager
            with contextlib.suppress(AmiError):
                await self._request("Logoff", {}, None, min(self.timeout, 1.0))
            self._manager = None
        self._closing = True
        self._fail_pending(AmiError(f"the AMI connection to {self.where} was closed"))
        manager.close()

    def on_event(self, pattern: str, callback: EventCallback) -> None:
        """Call `callback(event)` for events whose name matches the glob `pattern` (needs
        `events=True`)."""
        if self._manager is None:
            raise AmiError("not connected")

        def relay(_manager: Any, event: Any) -> None:
            callback(_as_dict(event))

        self._manager.register_event(pattern, relay)

    async def _beat(self, interval: float) -> None:
        while not self._heartbeat_stop:
            await asyncio.sleep(interval)
            if self._pending:
                # Asterisk answers one session's actions in order: a Ping queued behind a
                # long reload would look like a hang. Pending actions have their own limits.
                continue
            try:
                await self.ping()
            except AmiError as e:
                broken = AmiError(f"Asterisk at {self.where} stopped answering pings "
                                  f"(hung or overloaded): {e.message}")
                self._break(broken)
                return

    def _break(self, error: AmiError) -> None:
        self._broken = error
        self._fail_pending(error)
        if self._manager is not None:
            self._manager.close()

    def _lost(self, exc: object) -> None:
        if self._closing or self._broken is not None:
            return
        detail = f": {exc}" if isinstance(exc, Exception) and str(exc) else ""
        self._broken = AmiError(f"lost the AMI connection to Asterisk at {self.where}{detail}")
        self._fail_pending(self._broken)

    def _fail_pending(self, error: AmiError) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error)

    def _route(self, message: Any) -> bool:
        action_id = message.action_id
        item = self._pending.get(action_id) if action_id else None
        if item is None:
            return False
        if item.feed(message):
            self._pending.pop(action_id, None)
        return True

    # -- sending -----------------------------------------------------------------------

    async def _request(self, name: str, fields: Mapping[str, FieldValue],
                       complete_event: str | None, timeout: float | None) -> list[Any]:
        if self._broken is not None:
            raise self._broken
        manager = self._manager
        if manager is None or manager.protocol is None or manager.protocol.closed:
            raise AmiError(f"not connected to the AMI at {self.where}")
        headers: dict[str, str | list[str]] = {"Action": name}
        for key, value in fields.items():
            values = [value] if isinstance(value, str | int) else list(value)
            for v in values:
                if "\r" in str(v) or "\n" in str(v):
                    raise AmiError(f"AMI field {key} of action {name} contains a line break")
            headers[key] = str(value) if isinstance(value, str | int) else [str(v) for v in values]
        action = Action(headers)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        action_id = str(action.action_id)
        self._pending[action_id] = _Pending(name, future, complete_event)
        manager.protocol.transport.write(str(action).encode("utf-8"))
        limit = self.timeout if timeout is None else timeout
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives
            # as the answer does, and a cancelled heartbeat then sleeps on forever.
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise AmiError(f"Asterisk at {self.where} did not answer action {name} within "
                           f"{limit:g} s (down or hung?)") from None
        finally:
            self._pending.pop(action_id, None)

    async def action(self, name: str, *, timeout: float | None = None, check: bool = True,
                     **fields: FieldValue) -> AmiMessage:
        """Send one action, return its response headers (repeated headers joined by "\\n").

        AMI field names are CamelCase (`Timeout=` is Originate's field; `timeout=` is ours).
        An error response raises AmiError unless `check=False`.
        """
        reply = await self._request(name, fields, None, timeout)
        response = _as_dict(reply[0])
        if check and response.get("Response") not in ("Success", "Follows", "Goodbye"):
            raise AmiError(f"Asterisk refused action {name}: "
                           f"{response.get('Message') or response.get('Response', '?')}")
        return response

    async def action_list(self, name: str, complete_event: str, *,
                          timeout: float | None = None,
                          empty_messages: Sequence[str] = (),
                          **fields: FieldValue) -> list[AmiMessage]:
        """Send a list action; return the events it produced (not the response, not the
        final `complete_event`). An error response whose Message is in `empty_messages`
        (e.g. "No endpoints found") means an empty list; any other raises AmiError."""
        reply = await self._request(name, fields, complete_event, timeout)
        first = _as_dict(reply[0])
        if first.get("Response") != "Success":
            message = first.get("Message", "")
            if message in empty_messages:
                return []
            raise AmiError(f"Asterisk refused action {name}: {message or first.get('Response')}")
        return [_as_dict(m) for m in reply[1:-1]]

    async def command(self, cli_command: str, *, timeout: float | None = None) -> str:
        """Run a CLI command through `Action: Command`; its output lines, joined."""
        reply = await self._request("Command", {"Command": cli_command}, None, timeout)
        output = _header(reply[0], "Output")
        if _header(reply[0], "Response") != "Success":
            raise AmiError(f"Asterisk refused the CLI command {cli_command!r}: "
                           f"{output or _header(reply[0], 'Message')}")
        return output

    async def ping(self, *, timeout: float | None = None) -> float:
        """Round trip of one Ping, in seconds."""
        start = time.monotonic()
        reply = await self.action("Ping", timeout=timeout)
        if reply.get("Ping") != "Pong":
            raise AmiError(f"unexpected Ping answer from {self.where}: {reply}")
        return time.monotonic() - start

    # -- conveniences ------------------------------------------------------------------

    # Endpoints, AORs, modules and reloads (`CliQueries`) go through the CLI, which no
    # account the project creates may use: apply takes the control socket (`AsteriskCli`).

    async def channels_count(self) -> int:
        events = await self.action_list("CoreShowChannels", "CoreShowChannelsComplete")
        return sum(1 for e in events if e.get("Event") == "CoreShowChannel")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion from synchronous code (the CLI)."""
    return asyncio.run(coro)
