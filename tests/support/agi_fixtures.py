"""The FastAGI service as a separate process (`python -m wildix_ast agi serve --port 0`)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.services.agi.probe import handshake
from wildix_ast.services.agi.server import request_signature
from wildix_ast.store import open_store
from wildix_ast.store.vault import fastagi_key

PROBE_UNIQUEID = "1700000000.1"  # the uniqueid of `probe.handshake`
_LISTENING = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


@dataclass
class AgiService:
    process: subprocess.Popen[str]
    host: str
    port: int
    #: the FastAGI key its store keeps (the applied dialplan signs every request with it)
    key: str = ""

    def route(self, name: str, *args: str, uniqueid: str = PROBE_UNIQUEID) -> str:
        """`name` as the dialplan asks for it, signed for `args` and the channel
        `uniqueid` (the probe's handshake's by default)."""
        return f"{request_signature(self.key, uniqueid, name, args)}/{name}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def agi_service(*args: str, timeout: float = 20.0, log: Path | None = None,
                ) -> Iterator[AgiService]:
    """Start `wildix-ast agi serve` on a free loopback port; stopped on exit. Its store
    (`--db`, else a scratch one) holds the FastAGI key (generated, as an apply would);
    `log`: where its standard error goes."""
    with tempfile.TemporaryDirectory(prefix="agi-store-") as scratch:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        # The service opens its store at start: never the shared default one in a test.
        env.setdefault("WILDIX_AST_DB", str(Path(scratch) / "store.sqlite3"))
        db = args[args.index("--db") + 1] if "--db" in args else env["WILDIX_AST_DB"]
        with open_store(db) as store:
            key = fastagi_key(store)
        with _agi_process(args, env, timeout, log) as service:
            service.key = key
            yield service


@contextmanager
def _agi_process(args: tuple[str, ...], env: dict[str, str], timeout: float,
                 log: Path | None = None) -> Iterator[AgiService]:
    errors = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "agi", "serve", "--host", "127.0.0.1",
         "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    service: AgiService | None = None
    try:
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the FastAGI service exited before listening")
            found = _LISTENING.search(line)
            if found:
                service = AgiService(process, found["host"], int(found["port"]))
                break
        if service is None:
            raise RuntimeError("the FastAGI service did not say where it listens")
        yield service
    finally:
        if service is not None:
            service.stop()
        elif process.poll() is None:
            process.kill()
            process.wait()
        if log is not None:
            errors.close()  # type: ignore[union-attr]


def garbage(rng: random.Random) -> tuple[bytes, bool]:
    """One of the bad handshakes a port scanner, a hung-up caller or a broken peer sends,
    and whether the peer then closes (else it stays open, silent)."""
    full = handshake("popup", ["{CALLERNUM}"])
    kind = rng.randrange(6)
    if kind == 0:
        return b"", True
    if kind == 1:
        return full[:rng.randrange(1, len(full) - 1)], True
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), True
    if kind == 3:
        return b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True
    if kind == 4:
        return b"agi_x: " + b"z" * rng.randrange(5000, 40000), False
    return full[:rng.randrange(1, len(full) - 1)], False


async def attack(host: str, port: int, rng: random.Random, count: int) -> None:
    """`count` bad handshakes, one after another with short random pauses; the silent ones
    are closed within 2.5 s."""
    loop = asyncio.get_running_loop()
    for _ in range(count):
        data, close = garbage(rng)
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(data)
        if close:
            writer.write_eof()
            if rng.random() < 0.5:
                writer.transport.abort()
            else:
                writer.close()
        else:
            loop.call_later(rng.uniform(0, 2.5), writer.transport.abort)
        await asyncio.sleep(rng.uniform(0, 0.1))
    await asyncio.sleep(2.6)  # the silent ones are all closed by now
