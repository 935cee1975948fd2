"""The Asterisk side of FastAGI, for health checks, tests and the benchmark: connect, send a
handshake as res_agi does, answer the server's commands, collect the variables it sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wildix_ast.services.agi.protocol import AgiProtocolError, parse_mset, split_command


@dataclass
class ProbeResult:
    """What one FastAGI session did: variables set, every command seen, how long it took."""

    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def handshake(route: str, args: Sequence[str] = (), *, port: int = 4573,
              headers: Mapping[str, str] | None = None) -> bytes:
    """A handshake like Asterisk 22's for `AGI(agi://127.0.0.1:PORT/ROUTE,ARGS...)`."""
    fields = {
        "agi_network": "yes",
        "agi_network_script": route,
        "agi_request": f"agi://127.0.0.1:{port}/{route}",
        "agi_channel": "PJSIP/101-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1700000000.1",
        "agi_version": "22.10.1",
        "agi_callerid": "101",
        "agi_calleridname": "Alice",
        "agi_callingpres": "0",
        "agi_dnid": "102",
        "agi_rdnis": "unknown",
        "agi_context": "users",
        "agi_extension": "102",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
        **(headers or {}),
    }
    for index, arg in enumerate(args, start=1):
        fields[f"agi_arg_{index}"] = arg
    return "".join(f"{k}: {v}\n" for k, v in fields.items()).encode("utf-8") + b"\n"


def answer(words: Sequence[str], channel: Mapping[str, str]) -> bytes:
    """Asterisk's answer to one command (SET/GET VARIABLE, EXEC MSet and VERBOSE; others
    are 510)."""
    verb = " ".join(words[:2]).upper()
    if verb == "SET VARIABLE" and len(words) == 4:
        return b"200 result=1\n"
    if verb == "EXEC MSET" and len(words) == 3:
        return b"200 result=0\n"
    if verb == "GET VARIABLE" and len(words) == 3:
        value = channel.get(words[2])
        return b"200 result=0\n" if value is None else f"200 result=1 ({value})\n".encode()
    if words and words[0].upper() == "VERBOSE":
        return b"200 result=1\n"
    return b"510 Invalid or unknown command\n"


async def probe(host: str, port: int, route: str, args: Sequence[str] = (), *,
                timeout: float = 2.0, channel: Mapping[str, str] | None = None,
                headers: Mapping[str, str] | None = None) -> ProbeResult:
    """One FastAGI session against a server, as Asterisk would hold it; raises OSError
    (refused), TimeoutError, or AgiProtocolError (a command Asterisk could not parse)."""
    result = ProbeResult()
    known = dict(channel or {})
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(handshake(route, args, port=port, headers=headers))
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    break
                text = line.decode("utf-8").rstrip("\n")
                result.commands.append(text)
                words = split_command(text)
                verb = " ".join(words[:2]).upper()
                if verb == "SET VARIABLE" and len(words) == 4:
                    result.variables[words[2]] = words[3]
                    known[words[2]] = words[3]
                elif verb == "EXEC MSET" and len(words) == 3:
                    result.variables.update(parse_mset(words[2]))
                    known.update(parse_mset(words[2]))
                elif len(words) < 1:
                    raise AgiProtocolError("empty command line")
                writer.write(answer(words, known))
                await writer.drain()
        finally:
            writer.transport.abort()
    result.elapsed = time.monotonic() - start
    return result
