"""A throwaway PostgreSQL 15 server for tests, from Debian's `postgresql` package.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
`postgres` system user (runuser). It listens on 127.0.0.1 on a free port, keeps its unix
socket in its own temporary folder, and is stopped and deleted at the end of the session.
Missing binaries make the tests fail (not skip): the CI must install them."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wildix_ast.lab.allocator import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "run .ci/install-system-packages (it installs Debian's postgresql package)"
SERVER_USER = "postgres"


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
            pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): "
                        f"{INSTALL_HINT}", pytrace=False)
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="wildix-ast-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = secrets.token_hex(16)
        self.user = SERVER_USER
        self.port = 0
        self._options = ""
        self._databases = 0
        if self.as_root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                pytest.fail(f"no {SERVER_USER!r} system user: {INSTALL_HINT}", pytrace=False)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}\n{log}")
        return result

    def start(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self.as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={password_file}", "--no-sync")
        password_file.unlink()
        for attempt in range(3):
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", "60", "-o", options, "start")
                self._options = options
                return
            except RuntimeError:
                if attempt == 2:  # the port was taken between choosing and binding it
                    raise

    def pause(self) -> None:
        """Stop the server, keeping its data and port (an outage); `resume` ends it."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", self._options, "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str | None = None,
            port: int | None = None) -> str:
        """A SQLAlchemy URL to `database` over TCP with the server's password."""
        secret = self.password if password is None else password
        return (f"postgresql+psycopg2://{self.user}:{secret}@127.0.0.1:"
                f"{port or self.port}/{database}")

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                      password=self.password, dbname=database)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"wildix_test_{self._databases}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL 15 for the whole session, stopped and deleted afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres_server.create_database()
