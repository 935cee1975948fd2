"""The provisioning server's worker processes: one listening socket, opened by the main
process, shared by `count` forked workers that each accept on it (one Python process per
core: a single process runs its Python code on one core at a time, whatever its threads).

The main process serves nothing: it forks the workers, restarts one that dies, forwards
SIGTERM/SIGINT to them and waits for them, and feeds systemd's watchdog only while every
worker has said within `3 × WATCHDOG_EVERY` that its accept loop runs (a line on a pipe:
the unit keeps `NotifyAccess=main`, and workers never talk to systemd). A worker whose main
process is gone (killed) stops by itself.

Shared state between workers goes through files: the ban file (`guard.Guard` follows it on
each connection) and the miss and enrolment counts (`guard.MissBook`, in a folder the main
process makes and removes)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wildix_ast.provisioning")

WATCHDOG_EVERY = 10.0
RESTART_PAUSE = 1.0
"""Seconds before a dead worker is started again (a worker that cannot start must not make
the main process spin)."""
STOP_TIMEOUT = 12.0
"""Seconds the workers get to finish after SIGTERM before SIGKILL (the unit's
TimeoutStopSec is 15)."""
LISTEN_BACKLOG = 512


def listen(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts on (non-blocking: a worker that lost
    the race for a connection goes back to its loop instead of waiting in accept)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


class Heartbeat:
    """A worker's side of the pipe: `beat()` at most every WATCHDOG_EVERY (never blocks);
    `orphaned()`: the main process is gone."""

    def __init__(self, index: int, fd: int, parent: int) -> None:
        self.index = index
        self.fd = fd
        self.parent = parent
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last >= WATCHDOG_EVERY:
            self._last = now
            with contextlib.suppress(OSError):
                os.write(self.fd, f"{self.index}\n".encode())

    def orphaned(self) -> bool:
        return os.getppid() != self.parent


def run_workers(count: int, work: Callable[[Heartbeat], None],
                notify: Callable[[str], Any]) -> int:
    """Fork `count` workers running `work(heartbeat)` until SIGTERM or SIGINT; the number
    of workers that died unasked (each restarted)."""
    parent = os.getpid()
    readable, writable = os.pipe()
    os.set_blocking(writable, False)
    children: dict[int, int] = {}
    heard: dict[int, float] = {}
    stopping: list[float] = []
    deaths = 0

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(readable)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.environ.pop("NOTIFY_SOCKET", None)  # the main process speaks to systemd
                work(Heartbeat(index, writable, parent))
                code = 0
            except BaseException:
                log.exception("provisioning worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
        # a first start gets its grace; a restarted one must beat on its own: one that dies
        # at once again and again stops the watchdog, and systemd restarts the service
        heard.setdefault(index, time.monotonic())

    def stop(*_: Any) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            for pid in list(children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    previous = (signal.signal(signal.SIGTERM, stop), signal.signal(signal.SIGINT, stop))
    try:
        for index in range(count):
            spawn(index)
        notify("READY=1")
        fed = 0.0
        buffered = b""
        while children:
            with contextlib.suppress(InterruptedError):
                ready, _, _ = select.select([readable], [], [], 0.5)
                if ready:
                    buffered += os.read(readable, 4096)
                    *lines, buffered = buffered.split(b"\n")
                    now = time.monotonic()
                    for line in lines:
                        with contextlib.suppress(ValueError):
                            heard[int(line)] = now
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                index = children.pop(pid, -1)
                if index < 0 or stopping:
                    continue
                deaths += 1
                log.error("provisioning worker %d (pid %d) ended (%s): starting it again",
                          index, pid, _status(status))
                time.sleep(RESTART_PAUSE)
                if not stopping:
                    spawn(index)
            now = time.monotonic()
            if stopping:
                if now - stopping[0] > STOP_TIMEOUT:
                    for pid in list(children):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                continue
            if now - fed >= WATCHDOG_EVERY and \
                    all(now - heard[i] < 3 * WATCHDOG_EVERY for i in children.values()):
                notify("WATCHDOG=1")
                fed = now
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        os.close(readable)
        os.close(writable)
    return deaths


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
