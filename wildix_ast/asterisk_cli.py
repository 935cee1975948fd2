"""Asterisk's console over its control socket (`asterisk -rx`): how apply reloads, verifies
and restarts, and how `test-call` originates.

Why not the AMI: the AMI classes that allow reloads (`system`, `config`) also allow
`GetConfig` (every SIP password), and `command` runs any CLI command (`pjsip show auth`, a
`channel originate` of an AGI program). No standing AMI account holds those. The control
socket (`astrundir/asterisk.ctl`, mode 0660 and group `wildix-ast-console` as `asterisk.conf`
sets them) is reachable only by root, the user Asterisk runs as, who can read `/etc/asterisk`
anyway, and Mail2Fax's dialer (the group's one other member: services/fax/dialer.py, which checks
each job again before it places its call). Apply runs beside Asterisk (the lab, or the host
it configures).

`CliQueries` reads what apply needs from CLI output; `AmiClient` (an account holding
`command`, as a test's own lab has) and `AsteriskCli` both provide it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from wildix_ast.errors import AmiError, WildixError

_CONTEXT_LINE = re.compile(r"^\[ Context '(?P<name>[^']+)' created by '(?P<registrar>[^']*)' \]$")
_UPTIME = re.compile(r"^System uptime:\s*(\d+)", re.MULTILINE)

#: runs one console command (command, timeout) -> its output; raises WildixError
Runner = Callable[[str, float], str]


class CliQueries:
    """What apply asks Asterisk, read from the CLI's output (`command` is the transport)."""

    bulk_timeout: float = 120.0

    async def command(self, cli_command: str, *, timeout: float | None = None) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _listed(self, cli_command: str, label: str) -> set[str]:
        output = await self.command(cli_command, timeout=self.bulk_timeout)
        names: set[str] = set()
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == label and not fields[1].startswith("<"):
                names.add(fields[1].split("/", 1)[0])  # `101/101`: name/caller ID
        return names

    async def endpoints(self) -> set[str]:
        return await self._listed("pjsip list endpoints", "Endpoint:")

    async def endpoint_aors(self, name: str) -> set[str] | None:
        """The AORs Asterisk attached to endpoint `name`, or None if it has no such
        endpoint."""
        output = await self.command(f"pjsip show endpoint {name}")
        found = aors = False
        attached: set[str] = set()
        for line in output.splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[1].startswith("<"):
                continue
            if fields[0] == "Endpoint:":
                found = fields[1].split("/", 1)[0] == name
                aors = found
            elif fields[0] == "Aor:" and aors:
                attached.add(fields[1])
        return attached if found else None

    async def aors(self) -> set[str]:
        return await self._listed("pjsip list aors", "Aor:")

    async def contexts(self, registrar: str | None = None) -> set[str]:
        """Dialplan contexts (optionally only those created by `registrar`, e.g.
        'pbx_config'), parsed from `dialplan show`."""
        output = await self.command("dialplan show", timeout=self.bulk_timeout)
        names: set[str] = set()
        for line in output.splitlines():
            found = _CONTEXT_LINE.match(line.strip())
            if found and (registrar is None or found["registrar"] == registrar):
                names.add(found["name"])
        return names

    async def has_context(self, name: str) -> bool:
        output = await self.command(f"dialplan show {name}")
        return any((found := _CONTEXT_LINE.match(line.strip())) is not None
                   and found["name"] == name for line in output.splitlines())

    async def module_loaded(self, module: str) -> bool:
        output = await self.command(f"module show like {module}")
        return any(line.split()[:1] == [module] for line in output.splitlines())

    async def loaded_modules(self) -> set[str]:
        """The names of every loaded module (`module show`: one console command for all)."""
        output = await self.command("module show")
        return {words[0] for words in (line.split() for line in output.splitlines())
                if words and words[0].endswith(".so")}

    async def reload_module(self, module: str, *, timeout: float | None = None) -> None:
        """Reload one module (or a built-in: manager, logger, indications, cdr, cel,
        features, ...); AmiError when Asterisk says it could not."""
        output = await self.command(f"module reload {module}",
                                    timeout=timeout or self.bulk_timeout)
        if "reloaded successfully" not in output and "request queued" not in output:
            raise AmiError(f"Asterisk could not reload {module}: "
                           f"{output.strip() or 'no answer'}")

    async def started_at(self) -> float:
        """When the running Asterisk process started (epoch seconds, to about a second):
        tells a restarted Asterisk from the old one."""
        output = await self.command("core show uptime seconds")
        found = _UPTIME.search(output)
        if found is None:
            raise AmiError(f"unexpected `core show uptime` answer: {output.strip()!r}")
        return time.time() - int(found[1])


class AsteriskCli(CliQueries):
    """The console of one Asterisk, through a `Runner` (the lab's `nsenter … asterisk -rx`,
    or `host_runner`). `connect` checks that it answers; there is no session to keep."""

    def __init__(self, runner: Runner, where: str, *, timeout: float = 15.0,
                 bulk_timeout: float = 120.0) -> None:
        self._run = runner
        self.where = where
        self.timeout = timeout
        self.bulk_timeout = bulk_timeout

    async def command(self, cli_command: str, *, timeout: float | None = None) -> str:
        if any(c in cli_command for c in "\r\n\0"):
            raise AmiError(f"refused CLI command with a line break: {cli_command!r}")
        try:
            return await asyncio.to_thread(self._run, cli_command, timeout or self.timeout)
        except WildixError as e:
            raise AmiError(f"Asterisk's console ({self.where}): {e.message}") from None

    async def connect(self) -> None:
        output = await self.command("core show version")
        if "Asterisk" not in output:
            raise AmiError(f"Asterisk's console ({self.where}) did not answer: "
                           f"{output.strip() or 'no output'}")

    async def close(self) -> None:
        pass


def host_runner(asterisk_conf: Path, binary: str = "asterisk") -> Runner:
    """`asterisk -C <asterisk.conf> -rx`: the console of this host's Asterisk (root, or the
    user Asterisk runs as: the control socket is theirs alone)."""

    def run(command: str, timeout: float) -> str:
        try:
            result = subprocess.run([binary, "-C", str(asterisk_conf), "-rx", command],
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    errors="replace", timeout=timeout, cwd="/")
        except FileNotFoundError:
            raise WildixError(f"`{binary}` is not installed here") from None
        except subprocess.TimeoutExpired:
            raise WildixError(f"`{command}` did not answer within {timeout:g} s") from None
        if result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip() or "no output"
            raise WildixError(f"`asterisk -rx {command!r}` failed (exit {result.returncode}): "
                              f"{detail}")
        return result.stdout

    return run
