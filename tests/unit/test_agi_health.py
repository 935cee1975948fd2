"""The FastAGI service's health includes a store read: a service whose store cannot be
read (the deployed host's defect: a WAL-mode SQLite folder mounted read-only) answers
`health` FAILED with the reason, `agi status` fails with it, and systemd's watchdog is not
fed (the unit's STATUS names the reason), while the same service on a writable store is
healthy. Real processes: `wildix-ast agi serve` in a private mount namespace, a unix
datagram socket standing for systemd's notify socket."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wildix_ast.errors import ServiceError
from wildix_ast.lab.allocator import free_port

pytestmark = pytest.mark.slow  # starts the FastAGI service and waits on its watchdog

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
WATCHDOG_USEC = 1_000_000  # the service pings (or not) every 0.5 s


def make_store(folder: Path) -> Path:
    folder.mkdir()
    store = folder / "store.sqlite3"
    done = subprocess.run([sys.executable, "-m", "wildix_ast", "import", str(EXAMPLE)],
                          env={**os.environ, "WILDIX_AST_DB": str(store)},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and store.is_file(), done.stderr
    return store


@contextmanager
def served(store: Path, *, read_only: bool, notify: Path) -> Iterator[tuple[int, socket.socket]]:
    """`agi serve` on the store; read_only: its folder bind-mounted read-only for the
    service only (as `ReadOnlyPaths=` does)."""
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(notify))
        sink.settimeout(0.2)
        serve = [sys.executable, "-m", "wildix_ast", "agi", "serve", "--port", str(port)]
        folder = str(store.parent)
        command = (["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift '
                    '&& exec "$@"', "sh", folder, *serve] if read_only else serve)
        env = {**os.environ, "WILDIX_AST_DB": str(store), "NOTIFY_SOCKET": str(notify),
               "WATCHDOG_USEC": str(WATCHDOG_USEC), "NO_COLOR": "1"}
        env.pop("WATCHDOG_PID", None)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            messages = collect(sink, until="READY=1", seconds=20)
            assert any("READY=1" in m for m in messages), messages
            yield port, sink
        finally:
            process.terminate()
            process.wait(timeout=15)


def collect(sink: socket.socket, *, until: str | None = None, seconds: float) -> list[str]:
    found: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found.append(sink.recv(4096).decode())
        except TimeoutError:
            continue
        if until is not None and until in found[-1]:
            break
    return found


def status(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wildix_ast", "agi", "status", "--port",
                           str(port), "--timeout", "5"], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "300"},
                          check=False, timeout=30)


def test_healthy_store_feeds_the_watchdog(tmp_path: Path) -> None:
    store = make_store(tmp_path / "state")
    with served(store, read_only=False, notify=tmp_path / "notify") as (port, sink):
        done = status(port)
        assert done.returncode == 0, done.stdout + done.stderr
        messages = collect(sink, seconds=2)
    assert sum("WATCHDOG=1" in m for m in messages) >= 2, messages
    assert not any("cannot be read" in m for m in messages), messages


def test_unreadable_store_fails_health_and_starves_the_watchdog(tmp_path: Path) -> None:
    store = make_store(tmp_path / "state")
    with served(store, read_only=True, notify=tmp_path / "notify") as (port, sink):
        done = status(port)
        messages = collect(sink, seconds=2)
    assert done.returncode == ServiceError.exit_code, done.stdout + done.stderr
    assert "store unreadable" in done.stderr and "unable to open database file" in done.stderr
    assert not any("WATCHDOG=1" in m for m in messages), messages
    assert any(re.search(r"STATUS=listening on 127\.0\.0\.1:\d+; the store cannot be read: "
                         r".*unable to open database file", m) for m in messages), messages
