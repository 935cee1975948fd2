"""The FastAGI service as a separate process (`python -m wildix_ast agi serve --port 0`)."""

from __future__ import annotations

import os
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

_LISTENING = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


@dataclass
class AgiService:
    process: subprocess.Popen[str]
    host: str
    port: int

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def agi_service(*args: str, timeout: float = 20.0) -> Iterator[AgiService]:
    """Start `wildix-ast agi serve` on a free loopback port; stopped on exit."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    # The service opens its store at start: never the shared default one in a test.
    env.setdefault("WILDIX_AST_DB", str(Path(tempfile.mkdtemp(prefix="agi-store-"))
                                        / "store.sqlite3"))
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "agi", "serve", "--host", "127.0.0.1",
         "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
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
