"""One FastAGI connection: read the handshake, send commands, read their answers.

Every read is bounded twice: by size (the stream's line limit, the handshake's total) and by
time (`asyncio.timeout`). A peer that closes, stalls or sends garbage ends the session with
`AgiProtocolError` (or `AgiHangup`), never with a loop that spins or waits forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from wildix_ast.services.agi.protocol import (
    MAX_HEADER_BYTES,
    MAX_HEADER_LINES,
    MSET_MAX_VARIABLES,
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiResponse,
    check_variable_name,
    format_command,
    mset_argument,
    parse_request,
    parse_response,
)

#: 520 usage errors end with this line.
_USAGE_END = "520 End of proper usage."
_MAX_USAGE_LINES = 64
#: res_agi reads a command into a 2048-byte buffer (AGI_BUF_LEN); keep a margin.
MAX_COMMAND_BYTES = 2000


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """One line without its newline (the caller bounds the time); AgiProtocolError on EOF
    or an oversized line."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        raise AgiProtocolError(f"peer closed the connection ({len(e.partial)} bytes of "
                               "an unfinished line)") from None
    except asyncio.LimitOverrunError:
        raise AgiProtocolError("line longer than the stream limit") from None
    return line.rstrip(b"\r\n")


async def read_request(reader: asyncio.StreamReader, timeout: float) -> AgiRequest:
    """The handshake, complete within `timeout` seconds and `MAX_HEADER_BYTES` bytes.

    Asterisk writes it at once, so it is read in one `readuntil` (the stream's `limit` must
    be at least MAX_HEADER_BYTES): one timer and one buffer search per session, not one
    per line."""
    try:
        async with asyncio.timeout(timeout):
            block = await reader.readuntil(b"\n\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise AgiProtocolError("empty handshake (peer closed at once)") from None
        raise AgiProtocolError(f"peer closed the connection mid-handshake ({len(e.partial)} "
                               "bytes)") from None
    except asyncio.LimitOverrunError:
        raise AgiProtocolError(f"handshake larger than {MAX_HEADER_BYTES} bytes") from None
    except TimeoutError:
        raise AgiProtocolError(f"handshake not complete within {timeout:g} s") from None
    except (ConnectionError, OSError) as e:
        raise AgiProtocolError(f"connection error: {e}") from None
    if len(block) > MAX_HEADER_BYTES:
        raise AgiProtocolError(f"handshake larger than {MAX_HEADER_BYTES} bytes")
    lines = block.rstrip(b"\n").split(b"\n")
    if len(lines) > MAX_HEADER_LINES:
        raise AgiProtocolError(f"handshake with more than {MAX_HEADER_LINES} lines")
    return parse_request([line.rstrip(b"\r") for line in lines])


class AgiSession:
    """Commands on one FastAGI connection. Each waits at most `command_timeout` seconds."""

    def __init__(self, request: AgiRequest, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, command_timeout: float = 2.0) -> None:
        self.request = request
        self.command_timeout = command_timeout
        self.hung_up = False
        self._reader = reader
        self._writer = writer

    async def command(self, verb: str, *args: str) -> AgiResponse:
        """Send one command and return its answer. Raises AgiHangup (dead channel),
        AgiCommandError (an error code) or AgiProtocolError (garbage, silence, EOF)."""
        line = format_command(verb, *args)
        try:
            # One timer for the whole exchange: the write, then the answer's lines.
            async with asyncio.timeout(self.command_timeout):
                self._writer.write(line)
                await self._writer.drain()
                while True:
                    text = (await _read_line(self._reader)).decode("utf-8", errors="replace")
                    if text == "HANGUP":
                        # Sent once when the channel goes away; our command's answer follows.
                        self.hung_up = True
                        continue
                    response = parse_response(text)
                    if response.code != 100:  # "100 result=0 Trying..." precedes the answer
                        break
                if text.startswith("520-"):
                    await self._skip_usage()
        except TimeoutError:
            raise AgiProtocolError(f"no answer to {verb} within {self.command_timeout:g} s") \
                from None
        except (ConnectionError, OSError) as e:
            raise AgiProtocolError(f"connection error during {verb}: {e}") from None
        if response.code == 511:
            self.hung_up = True
            raise AgiHangup(f"{verb}: {response.text}")
        if response.code != 200:
            raise AgiCommandError(verb, response)
        return response

    async def _skip_usage(self) -> None:
        for _ in range(_MAX_USAGE_LINES):
            line = await _read_line(self._reader)
            if line.decode("utf-8", errors="replace").startswith(_USAGE_END):
                return
        raise AgiProtocolError("520 usage text without its end line")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", check_variable_name(name), value)

    async def set_variables(self, variables: Mapping[str, str]) -> None:
        """Set `variables` in their order, in one round trip when they fit one `EXEC MSet`
        (Asterisk reads one command per wake-up from a buffered stream, so commands cannot
        be pipelined: each is a round trip), else one SET VARIABLE each."""
        if len(variables) <= MSET_MAX_VARIABLES:
            argument = mset_argument(variables)
            if len(format_command("EXEC", "MSet", argument)) <= MAX_COMMAND_BYTES:
                response = await self.command("EXEC", "MSet", argument)
                if response.result != "-2":  # -2: Asterisk has no MSet application
                    return
        for name, value in variables.items():
            await self.set_variable(name, value)

    async def get_variable(self, name: str) -> str | None:
        """A channel variable's value, None when it is not set."""
        response = await self.command("GET VARIABLE", check_variable_name(name))
        return response.data if response.result == "1" else None

    async def verbose(self, message: str, level: int = 3) -> None:
        await self.command("VERBOSE", message, str(level))
