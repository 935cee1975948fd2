"""The FastAGI wire format, as pure functions: the handshake's `agi_*` headers, the commands
we send and the `200 result=...` lines Asterisk answers. No I/O here (see `session`).

What Asterisk 22 sends (res_agi.c, `setup_env`): one `agi_name: value` line per variable
(`agi_network`, `agi_network_script`, `agi_request`, `agi_channel`, `agi_uniqueid`,
`agi_callerid`, `agi_extension`, ..., then `agi_arg_1` ... `agi_arg_N`), and a blank line.
Commands are one line each; arguments are split on blanks, with double quotes and backslash
escapes (`parse_args`). Each command gets one answer line (a `520-` usage error gets several,
ended by `520 End of proper usage.`); when the channel hangs up, a bare `HANGUP` line may
arrive before an answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

#: Asterisk's own handshake is ~1 KB; arguments and caller names can make it longer. Past
#: these limits the peer is not an Asterisk we want to talk to.
MAX_HEADER_BYTES = 16384
MAX_HEADER_LINES = 256
MAX_LINE_BYTES = 4096

_HEADER_NAME = re.compile(r"^agi_[a-z0-9_]{1,64}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
_RESPONSE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$")
_RESULT = re.compile(r"^result=(?P<result>\S*)(?:\s+\((?P<data>.*?)\))?"
                     r"(?P<extras>(?:\s+\S+=\S*)*)\s*$")


class AgiProtocolError(Exception):
    """The peer broke the FastAGI protocol (bad handshake, garbage, oversized input)."""


class AgiHangup(Exception):
    """The channel hung up (a `HANGUP` line, or a `511` answer on a dead channel)."""


class AgiCommandError(Exception):
    """Asterisk answered a command with an error code (510, 520, ...)."""

    def __init__(self, command: str, response: AgiResponse) -> None:
        super().__init__(f"AGI command {command!r} failed: {response.code} {response.text}")
        self.response = response


@dataclass(frozen=True)
class AgiRequest:
    """One FastAGI call: the handshake's headers and what they mean."""

    headers: Mapping[str, str]
    route: str
    params: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()

    def get(self, name: str, default: str = "") -> str:
        """A header by its name without the `agi_` prefix (`channel`, `callerid`, ...)."""
        return self.headers.get(f"agi_{name}", default)

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def callerid(self) -> str:
        """The caller's number; Asterisk writes `unknown` when there is none."""
        value = self.get("callerid")
        return "" if value == "unknown" else value

    @property
    def calleridname(self) -> str:
        value = self.get("calleridname")
        return "" if value == "unknown" else value

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def context(self) -> str:
        return self.get("context")


def parse_header_line(line: bytes) -> tuple[str, str]:
    """One handshake line (without its newline) as (name, value)."""
    if len(line) > MAX_LINE_BYTES:
        raise AgiProtocolError(f"handshake line longer than {MAX_LINE_BYTES} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        # Caller names can hold any bytes a phone sent; keep them readable, not fatal.
        text = line.decode("utf-8", errors="replace")
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not _HEADER_NAME.match(name):
        raise AgiProtocolError(f"not an AGI handshake line: {text[:60]!r}")
    return name, value.strip()


def parse_request(lines: Sequence[bytes]) -> AgiRequest:
    """The request that a complete handshake (its lines, without the blank one) describes."""
    if len(lines) > MAX_HEADER_LINES:
        raise AgiProtocolError(f"handshake with more than {MAX_HEADER_LINES} lines")
    headers: dict[str, str] = {}
    for raw in lines:
        name, value = parse_header_line(raw)
        headers[name] = value
    script = headers.get("agi_network_script")
    if script is None:
        # agi_request is `agi://host:port/route?x=y`; older peers may send only that.
        request = headers.get("agi_request", "")
        script = urlsplit(request).path.lstrip("/") if "://" in request else None
        query = urlsplit(request).query if script is not None else ""
    else:
        script, _, query = script.partition("?")
    if script is None:
        raise AgiProtocolError("handshake without agi_network_script or agi_request")
    args = []
    index = 1
    while f"agi_arg_{index}" in headers:
        args.append(headers[f"agi_arg_{index}"])
        index += 1
    return AgiRequest(headers=headers, route=script.strip("/"),
                      params=dict(parse_qsl(query, keep_blank_values=True)),
                      args=tuple(args))


@dataclass(frozen=True)
class AgiResponse:
    """One answer to a command: `200 result=1 (data) endpos=123`."""

    code: int
    text: str
    result: str = ""
    data: str | None = None
    extras: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == 200


def parse_response(line: str) -> AgiResponse:
    """An answer line (the first line of a `520-` block is enough)."""
    found = _RESPONSE.match(line)
    if found is None:
        raise AgiProtocolError(f"not an AGI answer: {line[:60]!r}")
    code = int(found["code"])
    rest = found["rest"]
    if code != 200:
        return AgiResponse(code=code, text=rest)
    result = _RESULT.match(rest)
    if result is None:
        raise AgiProtocolError(f"malformed 200 answer: {line[:60]!r}")
    extras = dict(pair.split("=", 1) for pair in result["extras"].split())
    return AgiResponse(code=200, text=rest, result=result["result"], data=result["data"],
                       extras=extras)


def quote_argument(value: str) -> str:
    """One command argument, quoted the way Asterisk's `parse_args` unquotes it."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("an AGI argument cannot contain a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(verb: str, *args: str) -> bytes:
    """A command line: the verb as given (it is ours, e.g. `SET VARIABLE`), arguments quoted."""
    if not re.fullmatch(r"[A-Z]+(?: [A-Z]+)*", verb):
        raise ValueError(f"not an AGI command verb: {verb!r}")
    return (" ".join([verb, *(quote_argument(a) for a in args)]) + "\n").encode("utf-8")


def check_variable_name(name: str) -> str:
    """A channel variable name we may set (letters, digits, `_`; not starting with a digit)."""
    if not _VARIABLE_NAME.match(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return name


#: Characters Asterisk's application argument parser (`ast_app_separate_args`) treats
#: specially: escaped with a backslash, each is taken literally.
_APP_SPECIAL = re.compile(r'([\\,"()\[\]])')
#: MSet takes at most 24 name=value pairs.
MSET_MAX_VARIABLES = 24


def mset_argument(variables: Mapping[str, str]) -> str:
    """The argument of `EXEC MSet` that sets `variables` in order, values taken literally
    (MSet does no variable substitution; separators, quotes and brackets are escaped)."""
    if len(variables) > MSET_MAX_VARIABLES:
        raise ValueError(f"MSet sets at most {MSET_MAX_VARIABLES} variables")
    return ",".join(f"{check_variable_name(name)}={_escape_app_argument(value)}"
                    for name, value in variables.items())


def _escape_app_argument(value: str) -> str:
    return _APP_SPECIAL.sub(r"\\\1", value)


def parse_mset(argument: str) -> dict[str, str]:
    """What Asterisk's MSet sets for `argument` (`ast_app_separate_args` with its quote,
    bracket and backslash rules, then each pair split at its first '='): the Asterisk side,
    for the probe and the tests."""
    pairs: list[str] = []
    current: list[str] = []
    depth = quoted = 0
    chars = iter(argument)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == '"':
            quoted ^= 1
        elif char in "([":
            depth += 1
            current.append(char)
        elif char in ")]":
            depth = max(0, depth - 1)
            current.append(char)
        elif char == "," and not depth and not quoted:
            pairs.append("".join(current))
            current = []
        else:
            current.append(char)
    pairs.append("".join(current))
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def split_command(line: str) -> list[str]:
    """A command line split into words as Asterisk's `parse_args` does: blanks separate,
    double quotes group, a backslash takes the next character literally. (The Asterisk side
    of the protocol, for the probe and the tests.)"""
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            in_word = True
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            in_word = True
        elif char in " \t" and not quoted:
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(char)
            in_word = True
    if quoted or escaped:
        raise AgiProtocolError(f"unterminated quote or escape in {line[:60]!r}")
    if in_word:
        words.append("".join(current))
    return words
