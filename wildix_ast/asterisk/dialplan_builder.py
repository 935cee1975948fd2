"""The dialplan builder: how every extensions.conf context is made (not a generated file).

Each `*_contexts.py` module (and `outgoing.py`) builds its contexts from these pieces:
`Context` (extensions, then includes), `Extension` (steps, each an application with an
optional label, and an optional hint), `Comment`. `extensions.py` puts them in file order
and `lines()` writes them; the template only emits the lines. The shared steps live here
too: the Q.850 causes the dialplan hangs up with, the admission of dialled numbers, and the
signed FastAGI request.

Channel variables are named in `wildix_ast.calls.variables`, context names in `names.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wildix_ast.asterisk.fastagi_key import KEY_LENGTH, KEY_OFFSET
from wildix_ast.asterisk.names import ADMIT_CONTEXT
from wildix_ast.calls import variables as v

# Q.850 causes; chan_pjsip answers them as the SIP status in the comment.
UNALLOCATED = 1  # 404 Not Found
NO_ROUTE = 3  # 404 Not Found
BUSY = 17  # 486 Busy Here
REJECTED = 21  # 403 Forbidden
CONGESTION = 34  # 503 Service Unavailable

Step = str | tuple[str, str]
"""An application (`Dial(...)`), or (label, application) for `same => n(label),...`."""


def var(name: str) -> str:
    """`${NAME}`: a variable's value in a dialplan expression."""
    return f"${{{name}}}"


@dataclass(frozen=True)
class Extension:
    """`exten => name,1,<first>` then `same => n,<step>` for each further step; a step
    may carry a label: `same => n(label),<app>`. A hint (a device or `park:...`) follows
    the steps as `exten => name,hint,<hint>`."""

    name: str
    steps: tuple[tuple[str, str], ...]
    hint: str = ""


@dataclass(frozen=True)
class Comment:
    """Comment lines (without their `; `), where a reader of extensions.conf needs them."""

    lines: tuple[str, ...]
    spaced: bool = False
    """A blank line before it (between contexts: after the previous group)."""


@dataclass(frozen=True)
class Context:
    name: str
    extensions: tuple[Extension | Comment, ...]
    includes: tuple[str, ...] = ()
    """Searched after the context's own extensions, in this order."""
    comment: tuple[str, ...] = ()
    """Written just above `[name]`."""


def extension(name: str, *steps: Step, hint: str = "") -> Extension:
    """An extension of `steps` (strings, or (label, application))."""
    return Extension(name, tuple(s if isinstance(s, tuple) else ("", s) for s in steps), hint)


def _comment_lines(lines: Iterable[str]) -> list[str]:
    return [f"; {line}" if line else ";" for line in lines]


def _extension_lines(e: Extension) -> list[str]:
    found = []
    for k, (label, app) in enumerate(e.steps):
        named = f"({label})" if label else ""
        found.append(f"exten => {e.name},1{named},{app}" if k == 0 else f" same => n{named},{app}")
    if e.hint:
        found.append(f"exten => {e.name},hint,{e.hint}")
    return found


def context_lines(context: Context) -> list[str]:
    """One context as extensions.conf writes it."""
    found = [*_comment_lines(context.comment), f"[{context.name}]"]
    for item in context.extensions:
        found += (_comment_lines(item.lines) if isinstance(item, Comment)
                  else _extension_lines(item))
    found += [f"include => {name}" for name in context.includes]
    return found


def lines(parts: Iterable[Context | Comment]) -> list[str]:
    """The dialplan's contexts in file order, each after a blank line; a `Comment` between
    contexts introduces those after it."""
    found: list[str] = []
    for part in parts:
        if isinstance(part, Comment):
            found += [""] * part.spaced + _comment_lines(part.lines)
        else:
            found += ["", *context_lines(part)]
    return found


# --- admission -------------------------------------------------------------------------------
# Asterisk's '.' and '!' match any character, so an open-ended pattern (a number table's
# `0XXXXX.`, an administrator's procedure number `9.`) also matches a Request-URI carrying
# Dial-string syntax (`&`, `@`, `/`, `,`...) or expressions. Every such extension first runs
# the one admission subroutine; nothing else can carry a character beyond its pattern's.
# What it checks is the caller's ${EXTEN}, copied to variables.DIALLED (a Gosub argument
# would be split at its commas before the check could see them).

ADMIT_NUMBER, ADMIT_CODE = "number", "code"
_ADMITTED = {ADMIT_NUMBER: ("+0-9", "^[+]?[0-9]{1,32}$"),
             ADMIT_CODE: ("+*#0-9", "^[+*#0-9]{1,32}$")}


def open_ended(name: str) -> bool:
    """An extension name that can match characters no pattern position names."""
    return name.startswith("_") and name.endswith((".", "!"))


def admit(kind: str = ADMIT_NUMBER) -> list[Step]:
    """The steps that admit ${EXTEN} (or end the call with 404)."""
    return [f"Set({v.DIALLED}=${{EXTEN}})", f"Gosub({ADMIT_CONTEXT},{kind},1)"]


def admitted(name: str, *steps: Step, kind: str = ADMIT_NUMBER) -> Extension:
    """`extension`, admitting the dialled number first when `name` is open-ended."""
    return extension(name, *(admit(kind) if open_ended(name) else []), *steps)


def admission_context() -> Context:
    """Two checks, each failing closed, and neither putting the number itself inside a
    `$[...]` expression (where its quotes and operators would be parsed): FILTER keeps
    only the admitted characters, so its length equals the number's only when there is
    nothing else (the argument parser also drops quotes and backslashes: shorter, refused);
    REGEX places the '+' and bounds the length (a number it cannot parse gives no 1)."""
    dialled = var(v.DIALLED)
    return Context(ADMIT_CONTEXT, tuple(
        extension(kind,
                  f"GotoIf($[${{LEN(${{FILTER({chars},{dialled})}})}} != ${{LEN({dialled})}}]"
                  "?refuse)",
                  f'GotoIf(${{REGEX("{regex}" {dialled})}}?ok)',
                  ("refuse", f"Hangup({UNALLOCATED})"), ("ok", "Return()"))
        for kind, (chars, regex) in _ADMITTED.items()))


# --- the signed FastAGI request --------------------------------------------------------------

AGI_URL = var(v.AGI_URL)
"""The FastAGI service's base URL, a dialplan global (`agi://<system.fastagi>`)."""
_KEY = f"${{FILE({var(v.AGI_KEY_FILE)},{KEY_OFFSET},{KEY_LENGTH})}}"


def agi_path(route: str, *args: str) -> str:
    """`<signature>/<route>` for `AGI(<AGI_URL>/<this>,<args>)`: the signature is
    SHA1(key|uniqueid|route|args...|key), computed by the dialplan from the same `args`
    the request sends (the FastAGI service computes it again: `services.agi.server`)."""
    signed = "|".join((_KEY, "${UNIQUEID}", route, *args, _KEY))
    return f"${{SHA1({signed})}}/{route}"


def agi(route: str, *args: str) -> list[Step]:
    """The fail-safe AGI call: the status is cleared first, so only the service's own OK
    counts."""
    return [f"Set({v.AGI_STATUS}=)",
            f"AGI({AGI_URL}/{agi_path(route, *args)}{''.join(',' + a for a in args)})"]

