"""The FastAGI server: routes to handlers, limits on everything, a safe answer on failure.

The dialplan contract (docs/runtime.md):

* before `AGI(agi://HOST:PORT/ROUTE,...)` the dialplan clears `variables.AGI_STATUS`;
* on success the server sets the decision's variables, then `variables.AGI_STATUS=OK` last, so
  `OK` means every variable of the decision was set;
* on any failure (handler raised, handler too slow, unknown route, too many sessions) it sets
  `variables.AGI_STATUS=FAILED` and `variables.AGI_ERROR=<reason>`;
* anything but `OK` (the server down, hung, or answering garbage leaves it empty) sends the
  call down the dialplan's own fallback branch.

Handlers are thin: a `Route.pure` function maps an `AgiRequest` to a `Decision` (unit-tested
without Asterisk); `Route.blocking` runs such a function in a thread (store look-ups);
`Route.session` gets the `AgiSession` for routes that must ask Asterisk something first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from wildix_ast.calls import variables as v
from wildix_ast.services.agi.protocol import (
    MAX_HEADER_BYTES,
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    check_variable_name,
)
from wildix_ast.services.agi.session import AgiSession, read_request

log = logging.getLogger(__name__)
#: refused requests: the one place an operator (or a log watcher) looks for attacks
security_log = logging.getLogger("wildix_ast.security")

OK = "OK"
FAILED = "FAILED"
HEALTH_ROUTE = "health"
#: The health route's own check (one store read) answers FAILED past this.
HEALTH_CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Decision:
    """What a route decided: channel variables for the dialplan to act on."""

    variables: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.variables:
            check_variable_name(name)
            if name in (v.AGI_STATUS, v.AGI_ERROR):
                raise ValueError(f"{name} is set by the server, not by a decision")


PureHandler = Callable[[AgiRequest], Decision]
SessionHandler = Callable[[AgiSession], Awaitable[Decision]]


@dataclass(frozen=True)
class Route:
    """A handler and how long it may take before the call gets the safe answer."""

    pure: PureHandler | None = None
    interactive: SessionHandler | None = None
    offload: bool = False
    timeout: float = 1.0

    @classmethod
    def of(cls, handler: PureHandler, *, timeout: float = 1.0) -> Route:
        """A fast pure function, run on the event loop (it must not block)."""
        return cls(pure=handler, timeout=timeout)

    @classmethod
    def blocking(cls, handler: PureHandler, *, timeout: float = 1.0) -> Route:
        """A function that may block (a database read), run in a worker thread."""
        return cls(pure=handler, offload=True, timeout=timeout)

    @classmethod
    def session(cls, handler: SessionHandler, *, timeout: float = 1.0) -> Route:
        """A coroutine that may send AGI commands before deciding."""
        return cls(interactive=handler, timeout=timeout)

    async def decide(self, session: AgiSession) -> Decision:
        if self.interactive is not None:
            return await self.interactive(session)
        assert self.pure is not None
        if self.offload:
            return await asyncio.to_thread(self.pure, session.request)
        return self.pure(session.request)


@dataclass(frozen=True)
class Limits:
    """Every bound of the server, in seconds and counts."""

    handshake_timeout: float = 2.0   # a real Asterisk sends its ~1 KB handshake at once
    command_timeout: float = 2.0     # per AGI command answer
    session_deadline: float = 10.0   # backstop for a whole connection
    max_sessions: int = 1000         # handlers running at once; beyond, FAILED at once
    backlog: int = 1024              # listen queue: a burst of calls is queued, not refused


@dataclass
class Stats:
    """Counters since start, and the latest decision latencies (seconds)."""

    started: float = field(default_factory=time.monotonic)
    connections: int = 0
    active: int = 0
    answered: int = 0
    failed: int = 0
    bad_handshakes: int = 0
    refused: int = 0
    hangups: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10000))

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def as_variables(self) -> dict[str, str]:
        p99 = self.percentile(0.99)
        return {
            v.AGI_UPTIME: f"{time.monotonic() - self.started:.0f}",
            v.AGI_CONNECTIONS: str(self.connections),
            v.AGI_ACTIVE: str(self.active),
            v.AGI_ANSWERED: str(self.answered),
            v.AGI_FAILED: str(self.failed),
            v.AGI_BAD_HANDSHAKES: str(self.bad_handshakes),
            v.AGI_REFUSED: str(self.refused),
            v.AGI_P99_MS: "" if p99 is None else f"{p99 * 1000:.2f}",
        }


class _Failure(Exception):
    """A session that must end with the safe answer; `reason` goes to variables.AGI_ERROR."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


KeySource = Callable[[], str | None]


def request_signature(key: str, uniqueid: str, route: str, args: Sequence[str]) -> str:
    """SHA1(key|uniqueid|route|args...|key) in hex: what Asterisk's `SHA1()` gives for the
    same text (`asterisk.services.agi_path`). The key at both ends: Asterisk has no HMAC,
    and a key at the start only would let a signature be extended (SHA-1's length
    extension)."""
    text = "|".join((key, uniqueid, route, *args, key))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class AgiServer:
    """An asyncio FastAGI server. `routes` maps the URL path (`agi://host:port/PATH`) to a
    Route; the `health` route is built in.

    With a `key` (a function: the store's vault is read when needed), every request but
    `health` (counters only) must come as `agi://host:port/<signature>/<route>`, the
    signature being SHA1(key|uniqueid|route|args...|key) (`request_signature`; the dialplan
    computes it, `asterisk.services.agi_path`): FastAGI is plain TCP with no
    authentication of its own, and any local process can connect. The key itself never
    travels; a signature seen (AMI events show the AGI's data) is worth nothing for other
    arguments or another call. A request without a good signature (or while no key is
    known) is answered nothing, closed, counted and logged on `wildix_ast.security`."""

    def __init__(self, routes: Mapping[str, Route], limits: Limits | None = None, *,
                 health_check: Callable[[], None] | None = None,
                 key: KeySource | None = None) -> None:
        self.limits = limits or Limits()
        self._key = key
        self.stats = Stats()
        # health_check (a store read) may block: the health route then runs it in a thread,
        # and a failure answers FAILED with its reason, so `status` sees a broken store
        self._health_check = health_check
        health = (Route.of(self._health) if health_check is None
                  else Route.blocking(self._health, timeout=HEALTH_CHECK_TIMEOUT))
        self.routes: dict[str, Route] = {HEALTH_ROUTE: health, **routes}
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._deciding = 0  # sessions whose handler runs now (max_sessions bounds it)

    def _health(self, _request: AgiRequest) -> Decision:
        if self._health_check is not None:
            try:
                self._health_check()
            except Exception as e:  # the reason goes to variables.AGI_ERROR
                raise _Failure(f"store unreadable: {e}") from None
        return Decision(self.stats.as_variables())

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the AGI server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str = "127.0.0.1", port: int = 4573) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._accept, host, port, backlog=self.limits.backlog, reuse_address=True,
            limit=MAX_HEADER_BYTES + 1)
        for sock in self._server.sockets:
            # decisions are one short line each way: do not wait to fill a segment
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("FastAGI server listening on %s:%d", *self.address)
        return self.address

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening, give running sessions their deadline, then cut them."""
        if self._server is not None:
            self._server.close()
        if self._sessions:
            await asyncio.wait(set(self._sessions), timeout=self.limits.session_deadline)
        for task in set(self._sessions):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self.stats.connections += 1
        self.stats.active += 1
        try:
            async with asyncio.timeout(self.limits.session_deadline):
                await self._session(reader, writer)
        except TimeoutError:
            self.stats.failed += 1
            log.error("FastAGI session from %s passed its %g s deadline; closed",
                      writer.get_extra_info("peername"), self.limits.session_deadline)
        except asyncio.CancelledError:
            # close() cut it. Ending normally: Python 3.11's stream server calls
            # task.exception() on its connection tasks, which raises for a cancelled one.
            log.debug("FastAGI session cut by the server's shutdown")
        except Exception:
            # Never reached by design; if it is, the server must live on.
            self.stats.failed += 1
            log.exception("FastAGI session failed unexpectedly")
        finally:
            self.stats.active -= 1
            self._sessions.discard(task)
            writer.transport.abort()  # no lingering close on a peer that stopped reading

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = time.monotonic()
        try:
            request = await read_request(reader, self.limits.handshake_timeout)
        except AgiProtocolError as e:
            self.stats.bad_handshakes += 1
            log.warning("FastAGI handshake from %s refused: %s",
                        writer.get_extra_info("peername"), e)
            return
        if self._key is not None and request.route != HEALTH_ROUTE:
            authenticated = self._authenticated(request, writer.get_extra_info("peername"))
            if authenticated is None:
                return
            request = authenticated
        session = AgiSession(request, reader, writer,
                             command_timeout=self.limits.command_timeout)
        try:
            decision = await self._decide(session)
            # OK last: it means every variable of the decision was set
            await session.set_variables({**decision.variables, v.AGI_STATUS: OK})
        except _Failure as failure:
            self.stats.failed += 1
            log.error("FastAGI %s for %s (%s): %s; the dialplan takes its fallback",
                      request.route or "/", request.channel, request.uniqueid, failure.reason)
            await self._safe_answer(session, failure.reason)
            return
        except AgiHangup:
            self.stats.hangups += 1
            return
        except (AgiProtocolError, AgiCommandError) as e:
            self.stats.failed += 1
            log.error("FastAGI %s for %s: Asterisk side failed: %s", request.route,
                      request.channel, e)
            return
        self.stats.answered += 1
        self.stats.latencies.append(time.monotonic() - start)

    def _authenticated(self, request: AgiRequest, peer: object) -> AgiRequest | None:
        """The request with its key taken off its route, or None (refused, logged)."""
        assert self._key is not None
        given, _, route = request.route.partition("/")
        try:
            key = self._key()
        except Exception as e:  # the store unreadable: refuse, say why
            log.error("FastAGI: the key cannot be read from the store: %s", e)
            key = None
        if key and route:
            expected = request_signature(key, request.uniqueid, route, request.args)
            # compare_digest: the time taken tells nothing of how much matched
            if hmac.compare_digest(given.encode(), expected.encode()):
                return dataclasses.replace(request, route=route)
        self.stats.refused += 1
        security_log.warning(
            "security event: FastAGI request refused (%s) from %s for route %r, channel "
            "%r: nothing done", "no key known" if not key else "bad or missing signature",
            peer, (route or given)[:80], request.channel[:80])
        return None

    async def _decide(self, session: AgiSession) -> Decision:
        request = session.request
        route = self.routes.get(request.route)
        if route is None:
            raise _Failure(f"unknown-route {request.route!r}")
        if self._deciding >= self.limits.max_sessions:
            raise _Failure("overloaded")
        self._deciding += 1
        try:
            if route.pure is not None and not route.offload:
                decision = route.pure(request)  # synchronous: no timer can interrupt it
            else:
                async with asyncio.timeout(route.timeout):
                    decision = await route.decide(session)
        except TimeoutError:
            raise _Failure(f"timeout after {route.timeout:g} s") from None
        except (AgiHangup, AgiProtocolError, _Failure):
            raise
        except Exception as e:
            log.exception("FastAGI route %s raised", request.route)
            raise _Failure(f"error {type(e).__name__}") from None
        finally:
            self._deciding -= 1
        if not isinstance(decision, Decision):
            raise _Failure(f"handler returned {type(decision).__name__}, not a Decision")
        return decision

    async def _safe_answer(self, session: AgiSession, reason: str) -> None:
        with contextlib.suppress(AgiProtocolError, AgiHangup, AgiCommandError):
            await session.set_variables({v.AGI_ERROR: reason[:200],
                                         v.AGI_STATUS: FAILED})
