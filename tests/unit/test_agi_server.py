"""The FastAGI server under bad peers, failing handlers and load (no Asterisk needed: the
probe plays Asterisk's side of the protocol)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest
from support.agi_fixtures import AgiService, agi_service, attack

from wildix_ast.calls import variables as v
from wildix_ast.cli.agi import check
from wildix_ast.errors import ServiceError
from wildix_ast.services.agi.probe import answer, handshake, probe
from wildix_ast.services.agi.protocol import MAX_HEADER_BYTES, AgiRequest, parse_mset, split_command
from wildix_ast.services.agi.server import (
    FAILED,
    OK,
    AgiServer,
    Decision,
    Limits,
    Route,
)
from wildix_ast.services.agi.session import AgiSession

HOST = "127.0.0.1"


@asynccontextmanager
async def running(routes: dict[str, Route], limits: Limits | None = None
                  ) -> AsyncIterator[AgiServer]:
    server = AgiServer(routes, limits)
    await server.start(HOST, 0)
    try:
        yield server
    finally:
        await server.close()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def echo(request: AgiRequest) -> Decision:
    return Decision({"WILDIX_TARGET": request.args[0] if request.args else "none"})


# -- handlers that fail ----------------------------------------------------------------------

def test_a_raising_handler_gets_the_safe_answer_and_the_server_lives_on() -> None:
    def broken(_request: AgiRequest) -> Decision:
        raise KeyError("no such user")

    async def go() -> None:
        async with running({"broken": Route.of(broken), "echo": Route.of(echo)}) as server:
            port = server.address[1]
            result = await probe(HOST, port, "broken")
            assert result.variables == {v.AGI_ERROR: "error KeyError", v.AGI_STATUS: FAILED}
            assert (await probe(HOST, port, "echo", ["7"])).variables == {
                "WILDIX_TARGET": "7", v.AGI_STATUS: OK}
            assert server.stats.failed == 1 and server.stats.answered == 1

    run(go())


def test_a_slow_handler_is_cut_at_its_timeout() -> None:
    async def slow(_session: AgiSession) -> Decision:
        await asyncio.sleep(30)
        return Decision()

    def slow_blocking(_request: AgiRequest) -> Decision:
        time.sleep(1.0)  # a stuck database read, in a worker thread
        return Decision()

    async def go() -> None:
        async with running({"slow": Route.session(slow, timeout=0.2),
                            "stuck": Route.blocking(slow_blocking, timeout=0.2)}) as server:
            for route in ("slow", "stuck"):
                start = time.monotonic()
                result = await probe(HOST, server.address[1], route)
                assert 0.2 <= time.monotonic() - start < 0.6
                assert result.variables == {v.AGI_ERROR: "timeout after 0.2 s",
                                            v.AGI_STATUS: FAILED}

    run(go())


def test_wrong_return_type_and_unknown_route_fail_safe() -> None:
    async def go() -> None:
        async with running({"none": Route.of(lambda r: None)}) as server:  # type: ignore[arg-type,return-value]
            port = server.address[1]
            assert (await probe(HOST, port, "none")).variables[v.AGI_STATUS] == FAILED
            result = await probe(HOST, port, "nope")
            assert result.variables == {v.AGI_ERROR: "unknown-route 'nope'",
                                        v.AGI_STATUS: FAILED}

    run(go())


def test_a_session_route_asks_asterisk_then_decides() -> None:
    async def by_variable(session: AgiSession) -> Decision:
        language = await session.get_variable("CHANNEL_LANGUAGE")
        missing = await session.get_variable("NOT_SET")
        return Decision({"WILDIX_GREETING": f"{language}/{missing}"})

    async def go() -> None:
        async with running({"greet": Route.session(by_variable)}) as server:
            result = await probe(HOST, server.address[1], "greet",
                                 channel={"CHANNEL_LANGUAGE": "fr"})
            assert result.variables == {"WILDIX_GREETING": "fr/None", v.AGI_STATUS: OK}

    run(go())


def test_blocking_route_runs_in_a_thread() -> None:
    def lookup(request: AgiRequest) -> Decision:
        time.sleep(0.05)
        return echo(request)

    async def go() -> None:
        async with running({"db": Route.blocking(lookup)}) as server:
            results = await asyncio.gather(*(probe(HOST, server.address[1], "db", [str(i)])
                                             for i in range(8)))
            assert [r.variables["WILDIX_TARGET"] for r in results] == [str(i) for i in range(8)]

    run(go())


# -- what Asterisk may answer ----------------------------------------------------------------

async def fake_asterisk(port: int, route: str, answers: list[bytes]) -> list[bytes]:
    """Send a handshake, then answer each command line with the next of `answers`."""
    reader, writer = await asyncio.open_connection(HOST, port)
    seen = []
    writer.write(handshake(route, ["1"]))
    for reply in answers:
        line = await asyncio.wait_for(reader.readline(), 2)
        if not line:
            break
        seen.append(line)
        writer.write(reply)
    rest = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    return [*seen, rest]


@pytest.mark.parametrize(("answers", "counter"), [
    # the decision is one command (EXEC MSet): its answer decides
    ([b"HANGUP\n511 Command Not Permitted on a dead channel\n"], "hangups"),
    ([b"511 Command Not Permitted on a dead channel\n"], "hangups"),
    ([b"garbage\n"], "failed"),
    ([b"510 Invalid or unknown command\n"], "failed"),
    ([b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n"
      b"520 End of proper usage.\n", b"200 result=1\n"], "failed"),
    ([b"100 result=0 Trying...\n200 result=1\n", b"200 result=1\n"], "answered"),
])
def test_asterisk_side_answers(answers: list[bytes], counter: str) -> None:
    async def go() -> None:
        async with running({"echo": Route.of(echo)}) as server:
            await fake_asterisk(server.address[1], "echo", answers)
            await asyncio.sleep(0.05)
            assert getattr(server.stats, counter) == 1
            assert (await probe(HOST, server.address[1], "echo", ["2"])).variables[
                v.AGI_STATUS] == OK

    run(go())


# -- bad handshakes ----------------------------------------------------------------------------

async def send_raw(port: int, data: bytes, *, close: bool = True, wait: float = 0.0) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    await writer.drain()
    if wait:
        await asyncio.sleep(wait)
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.transport.abort()


def test_peer_closing_mid_handshake_frees_the_session() -> None:
    """The panoramisk spin: here the session ends at EOF and the loop goes on."""
    async def go() -> None:
        async with running({"echo": Route.of(echo)}) as server:
            port = server.address[1]
            full = handshake("echo", ["3"])
            for cut in (0, 1, 17, len(full) // 2, len(full) - 1):
                assert await send_raw(port, full[:cut]) == b""
            assert (await probe(HOST, port, "echo", ["3"])).variables[v.AGI_STATUS] == OK
            assert server.stats.bad_handshakes == 5 and server.stats.active == 0

    run(go())


def test_oversized_and_silent_handshakes_are_cut() -> None:
    async def go() -> None:
        limits = Limits(handshake_timeout=0.3)
        async with running({"echo": Route.of(echo)}, limits) as server:
            port = server.address[1]
            many = b"".join(b"agi_x%d: %s\n" % (i, b"y" * 100) for i in range(200))
            assert len(many) > MAX_HEADER_BYTES
            assert await send_raw(port, many, close=False) == b""
            assert await send_raw(port, b"agi_x: " + b"y" * 100_000, close=False) == b""
            start = time.monotonic()
            assert await send_raw(port, b"agi_network: yes\n", close=False) == b""
            assert 0.25 < time.monotonic() - start < 1.0  # the handshake timeout, not more
            assert server.stats.bad_handshakes == 3

    run(go())


# -- against the service process ------------------------------------------------------------

@pytest.fixture(scope="module")
def service() -> AgiService:  # type: ignore[misc]
    with agi_service() as running_service:
        yield running_service


@pytest.mark.slow
def test_1000_bad_handshakes_while_real_sessions_are_answered(service: AgiService) -> None:
    """Issue 8, must show 6: 1,000 truncated or garbage handshakes (20 peers at once, over a
    few seconds, some left open and silent) while real sessions keep being answered."""
    async def go() -> tuple[list[float], int]:
        before = int((await check(service.host, service.port, 2.0))["WILDIX_AGI_BAD_HANDSHAKES"])
        latencies: list[float] = []
        attackers = asyncio.gather(*(attack(service.host, service.port, random.Random(seed), 50)
                                     for seed in range(20)))
        while not attackers.done():
            result = await probe(service.host, service.port,
                                 service.route("popup", "{CALLERNUM:1}"), ["{CALLERNUM:1}"])
            assert result.variables == {"WILDIX_POPUP_URL": "01", v.AGI_STATUS: OK}
            latencies.append(result.elapsed)
            await asyncio.sleep(0.01)
        await attackers
        after = int((await check(service.host, service.port, 2.0))["WILDIX_AGI_BAD_HANDSHAKES"])
        return latencies, after - before

    latencies, refused = asyncio.run(go())
    assert len(latencies) >= 50
    assert max(latencies) < 1.0, f"a real session waited {max(latencies):.3f} s"
    assert refused == 1000
    assert service.process.poll() is None


def test_100_simultaneous_sessions_none_refused(service: AgiService) -> None:
    listen = subprocess.run(["ss", "-Hlnt", f"sport = :{service.port}"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert int(listen[2]) >= 1024  # the listen backlog (ss shows it as Send-Q)

    async def one(gate: asyncio.Event) -> str:
        reader, writer = await asyncio.open_connection(service.host, service.port)
        await gate.wait()
        writer.write(handshake(service.route("popup", "{USERNUM}"), ["{USERNUM}"]))
        variables = {}
        while line := await asyncio.wait_for(reader.readline(), 5):
            words = split_command(line.decode().rstrip("\n"))
            if words[:2] == ["EXEC", "MSet"]:
                variables.update(parse_mset(words[2]))
            elif words[:2] == ["SET", "VARIABLE"]:
                variables[words[2]] = words[3]
            writer.write(answer(words, variables))
        writer.close()
        return variables.get(v.AGI_STATUS, "")

    async def go() -> list[str | BaseException]:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(one(gate)) for _ in range(100)]
        await asyncio.sleep(0.5)  # every connection is open before any handshake
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(go())
    assert results == [OK] * 100


def test_status_command(service: AgiService) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wildix_ast", "agi", "status", "--port",
         str(service.port), "--json"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert '"ok": true' in done.stdout and "WILDIX_AGI_BAD_HANDSHAKES" in done.stdout


def test_status_of_a_stopped_service_fails() -> None:
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "wildix_ast", "agi", "status", "--port",
                           str(port)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == ServiceError.exit_code
    assert f"the FastAGI service at 127.0.0.1:{port} is not reachable" in done.stderr

