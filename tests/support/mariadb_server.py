"""A throwaway MariaDB 10.11 server for tests, from Debian's `mariadb-server` package.

The server's data, unix socket, pid file and log live in their own temporary folder; it
listens on 127.0.0.1 on a free port and is stopped and deleted at the end of the session.
It reads no option file (`--no-defaults`: not /etc/mysql, so the compiled-in defaults,
latin1 included) and never touches the packaged `mariadb` service. As root it runs as the
`mysql` system user (mariadbd refuses to run as root otherwise).

The store connects as an ordinary user (`wildix`, with a password) that has every right on
the databases named `wildix_*` and none elsewhere, as a database administrator would set it up.
Missing binaries make the tests fail (not skip): the CI must install them."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wildix_ast.lab.allocator import free_port

INSTALL_DB = Path("/usr/bin/mariadb-install-db")
MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_HINT = "run .ci/install-system-packages (it installs Debian's mariadb-server package)"
SERVER_USER = "mysql"
APP_USER = "wildix"
START_TIMEOUT = 60
# Fast and small: nothing here needs to survive a crash.
TUNING = ("--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
          "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--skip-name-resolve")


class MariaDBServer:
    """One MariaDB server with its data directory in a temporary folder."""

    def __init__(self) -> None:
        for binary in (INSTALL_DB, MARIADBD):
            if not binary.exists():
                pytest.fail(f"MariaDB is not installed ({binary} is missing): {INSTALL_HINT}",
                            pytrace=False)
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="wildix-ast-mariadb-"))
        self.data = self.root / "data"
        self.socket = self.root / "sock"
        self.log = self.root / "server.log"
        self.user = APP_USER
        self.password = secrets.token_hex(16)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._user_option: tuple[str, ...] = ()
        if self.as_root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.fail(f"no {SERVER_USER!r} system user: {INSTALL_HINT}", pytrace=False)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._user_option = (f"--user={SERVER_USER}",)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def start(self) -> None:
        install = [str(INSTALL_DB), "--no-defaults", *self._user_option,
                   f"--datadir={self.data}", "--auth-root-authentication-method=normal",
                   "--skip-test-db", *TUNING]
        result = subprocess.run(install, capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode:
            raise RuntimeError(f"{' '.join(install)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        for attempt in range(3):
            self.port = free_port()
            try:
                self._start_server()
                break
            except RuntimeError:
                if attempt == 2:  # the port was taken between choosing and binding it
                    raise
        self.execute(f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{self.password}'")
        self.execute(f"GRANT ALL PRIVILEGES ON `wildix\\_%`.* TO '{APP_USER}'@'%'")

    def _start_server(self) -> None:
        command = [str(MARIADBD), "--no-defaults", *self._user_option,
                   f"--datadir={self.data}", f"--socket={self.socket}",
                   f"--pid-file={self.root / 'mariadbd.pid'}", f"--log-error={self.log}",
                   f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-networking=0",
                   *TUNING]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise RuntimeError(f"mariadbd exited with {code} while starting:\n"
                                   f"{self._log_tail()}")
            try:
                self.execute("SELECT 1")
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return
            except Exception as exc:
                if time.monotonic() > deadline:
                    self._terminate()
                    raise RuntimeError(f"mariadbd does not answer after {START_TIMEOUT} s "
                                       f"({exc}):\n{self._log_tail()}") from exc
                time.sleep(0.1)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # SIGTERM: a clean shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """Stop the server, keeping its data and port (an outage); `resume` ends it."""
        self._terminate()

    def resume(self) -> None:
        self._start_server()

    def stop(self) -> None:
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            port: int | None = None, scheme: str = "mysql+pymysql") -> str:
        """A SQLAlchemy URL to `database` over TCP, as the store's user by default."""
        secret = self.password if password is None else password
        return (f"{scheme}://{user or self.user}:{secret}@127.0.0.1:"
                f"{port or self.port}/{database}")

    def execute(self, sql: str, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as the server's root (over its unix socket); its rows."""
        import pymysql

        connection = pymysql.connect(unix_socket=str(self.socket), user="root", password="",
                                     database=database, autocommit=True, connect_timeout=5,
                                     charset="utf8mb4")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def create_database(self, *, scheme: str = "mysql+pymysql") -> str:
        """A new empty database (with the server's default character set); its URL."""
        self._databases += 1
        name = f"wildix_test_{self._databases}"
        self.execute(f"CREATE DATABASE `{name}`")
        return self.url(name, scheme=scheme)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A running MariaDB for the whole session, stopped and deleted afterwards."""
    server = MariaDBServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return mariadb_server.create_database()
