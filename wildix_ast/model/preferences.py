"""WMS user preferences ("Préférences utilisateur"): the phone functions per call type
(internal, external) and the user's settings, kept per user in the store and read by the
FastAGI service on each call.

Call types: `internal` (a colleague calls) and `external` (a call from a trunk, the dialplan's
`variables.CALL_TYPE=external`), each with its own functions; plus a `whitelist` and a
`blacklist` of caller numbers kept per user: a blacklisted caller is refused whatever the
call type, a whitelisted one goes through "reject all" and do-not-disturb.

Every value here can reach the dialplan at call time (through AGI channel variables that
become Dial/Goto arguments), so each is a number, a fixed word, an identifier, a bounded
integer or a boolean: none can carry a comma, a parenthesis or an expression."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from wildix_ast.model import fields
from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import Extension, pattern

VOICEMAIL = "VOICEMAIL"
"""A forward to the user's own mailbox (the WMS word for it)."""


ForwardTarget = Annotated[str, pattern(
    r"VOICEMAIL|\+?[0-9]{2,20}",
    "forward destination (an extension, a phone number, or VOICEMAIL)")]
"""Where a forward sends the call: a number dialled with the user's own rights (an external
number goes through the user's outgoing routing and ACL group), or VOICEMAIL."""

CallerPattern = Annotated[str, pattern(
    r"\+?[0-9]{2,20}\*?",
    "caller number (an extension, or a number in E.164 like '+33612345678'; a final '*' "
    "matches every number that starts so)")]
"""A white/blacklist entry, compared with the caller number in E.164 (trunk calls) or the
caller's extension (internal calls)."""

Ringtone = Annotated[str, pattern(
    r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}",
    "ringtone name (letters, digits, '_' or '-', 32 at most)")]
"""Sent to the phone as `Alert-Info: <http://127.0.0.1>;info=<name>`: the phone picks the
ring it maps to that name."""

PopupUrl = Annotated[str, Field(min_length=1, max_length=512), pattern(
    r"[^\x00-\x1f\x7f\s]+", "URL without spaces or control characters")]
"""Never reaches the dialplan: expanded by the FastAGI service (wildix_ast.calls.popup_url)."""

Seconds = Annotated[int, Field(ge=1, le=600)]
Delay = Annotated[int, Field(ge=0, le=120)]


class CallTypePreferences(BaseModel):
    """The phone functions for one call type, internal or external (WMS "Fonctions")."""

    model_config = STRICT

    reject: bool = False
    """Refuse every call of this type (a whitelisted caller still rings)."""
    forward_busy: ForwardTarget | None = None
    forward_unavailable: ForwardTarget | None = None
    """No answer within the call timeout, or no phone reachable."""
    forward_always: ForwardTarget | None = None
    call_waiting: bool = True
    """A second call rings while the user is on a call; off, it takes the busy path."""
    call_timeout: Seconds | None = None
    """Seconds the phone rings before the unavailable path; None: the dialplan's
    `ring_timeout`."""
    mobility: bool = False
    """Also ring the user's mobile (users[].mobile) after `mobility_delay` seconds."""
    mobility_delay: Delay = 0
    mobility_confirmation: bool = False
    """The mobile hears who calls and presses * to take the call (so its voicemail never
    does)."""
    missed_call_email: bool = False
    ringtone: Ringtone | None = None


class Hotline(BaseModel):
    """Off-hook auto-dial: `number` is dialled when the handset stays off-hook `delay`
    seconds without a digit."""

    model_config = STRICT

    number: Annotated[str, pattern(
        r"\+?[0-9]{2,20}", "number to dial (an extension or a phone number)")]
    delay: Delay = 0


class Preferences(BaseModel):
    """A user's preferences: functions per call type, caller lists, settings (WMS
    "Paramètres")."""

    model_config = STRICT

    internal: CallTypePreferences = Field(default_factory=CallTypePreferences)
    external: CallTypePreferences = Field(default_factory=CallTypePreferences)
    whitelist: Annotated[list[CallerPattern], Field(max_length=500)] = Field(
        default_factory=empty_list)
    blacklist: Annotated[list[CallerPattern], Field(max_length=500)] = Field(
        default_factory=empty_list)
    dnd: bool = False
    """Do not disturb: calls take the busy path (forward-busy, else the busy mailbox)."""
    shared_voicemail: Extension | None = None
    """Subscribe to this user's mailbox too (MWI and access)."""
    hotline: Hotline | None = None
    call_waiting_beep: bool = True
    popup_url: PopupUrl | None = None
    popup_http: bool = False
    """Also notify the popup URL by HTTP: the AMI service sends a GET to it, expanded for
    the call, when the phone starts ringing (WMS popup trigger "Ringing"), besides the AMI
    event the user's clients open."""

    @model_validator(mode="after")
    def _lists_apart(self) -> Preferences:
        both = sorted(set(self.whitelist) & set(self.blacklist))
        if both:
            raise ValueError(f"{', '.join(both)} in both the whitelist and the blacklist")
        return self

    @field_validator("popup_http")
    @classmethod
    def _popup_http_has_a_target(cls, on: bool, info: ValidationInfo) -> bool:
        template = info.data.get("popup_url")  # validated before: declared before
        if on:
            problem = "needs a popup_url" if template is None else http_problem(template)
            if problem is not None:
                raise ValueError(problem)
        return on

    def of_call_type(self, call_type: str) -> CallTypePreferences:
        """The functions for a call of `call_type` (`external`, else internal)."""
        return self.external if call_type == "external" else self.internal

    def forward_targets(self) -> list[tuple[str, str]]:
        """(location, number) of every forward and hotline destination."""
        found: list[tuple[str, str]] = []
        for name in ("internal", "external"):
            functions: CallTypePreferences = getattr(self, name)
            for kind in ("forward_busy", "forward_unavailable", "forward_always"):
                value = getattr(functions, kind)
                if value is not None:
                    found.append((f"{name}.{kind}", value))
        if self.hotline is not None:
            found.append(("hotline.number", self.hotline.number))
        return found


NO_PREFERENCES = Preferences()
"""Every default: what a user whose settings give no preferences has. Models are frozen
values, so all those users share this one (building one per user took a quarter of the
validation of a 10,000-user site)."""


def no_preferences() -> Preferences:
    return NO_PREFERENCES


def caller_matches(pattern: str, caller: str) -> bool:
    """A list entry against the caller number: exact, or a prefix for a final '*'."""
    if pattern.endswith("*"):
        return caller.startswith(pattern[:-1])
    return caller == pattern


def edit(preferences: Preferences, assignments: list[str]) -> Preferences:
    """`preferences` changed by assignments as a person types them: `KEY=VALUE` sets,
    `KEY=` puts the default back, `KEY+=VALUE` / `KEY-=VALUE` add to / remove from a list
    (whitelist, blacklist). KEY is dotted (`external.forward_busy`, `hotline.delay`).
    Raises SettingsError naming the assignment or the field."""
    from pydantic import ValidationError

    from wildix_ast.errors import Problem, SettingsError

    data: dict[str, Any] = preferences.model_dump(mode="json", exclude_defaults=True)
    problems: list[Problem] = []
    for assignment in assignments:
        found = _ASSIGNMENT.fullmatch(assignment)
        if found is None:
            problems.append(Problem(assignment, "write KEY=VALUE, KEY= (default), KEY+=VALUE "
                                    "or KEY-=VALUE (lists)"))
            continue
        key, operator, value = found["key"], found["op"], found["value"]
        *parents, name = key.split(".")
        owner = data
        for part in parents:
            inner = owner.setdefault(part, {})
            if not isinstance(inner, dict):
                problems.append(Problem(key, f"{part} is a single setting, not a group"))
                break
            owner = inner
        else:
            problem = _assign(owner, name, operator, value, preferences, key)
            if problem is not None:
                problems.append(Problem(key, problem))
    if problems:
        raise SettingsError("the preferences were not changed", problems)
    try:
        return Preferences.model_validate(data)
    except ValidationError as exc:
        located = [Problem(".".join(str(p) for p in e["loc"]), fields.message(e))
                   for e in exc.errors(include_url=False)]
        raise SettingsError("the preferences were not changed", located) from None


_ASSIGNMENT = re.compile(r"(?P<key>[a-z_]+(?:\.[a-z_]+)*)(?P<op>\+=|-=|=)(?P<value>.*)",
                         re.DOTALL)
_LISTS = ("whitelist", "blacklist")


def _assign(owner: dict[str, Any], name: str, operator: str, value: str,
            preferences: Preferences, key: str) -> str | None:
    """One assignment into the data of the preferences; a problem, or None."""
    if operator == "=":
        if value == "":
            owner.pop(name, None)
        elif key in _LISTS:
            owner[name] = [v for v in value.split(",") if v]
        else:
            owner[name] = value
        return None
    if key not in _LISTS:
        return f"{operator} works on lists ({', '.join(_LISTS)}) only"
    current: list[str] = list(owner.get(name, getattr(preferences, name)))
    if operator == "+=":
        owner[name] = current + [v for v in value.split(",") if v and v not in current]
        return None
    missing = [v for v in value.split(",") if v and v not in current]
    if missing:
        return f"{', '.join(missing)} is not in the {name}"
    owner[name] = [v for v in current if v not in value.split(",")]
    return None


def http_problem(template: str) -> str | None:
    """Why the AMI service cannot send an HTTP GET for `template` (None: it can): an
    http(s) URL whose scheme, host and port are written out, not placeholders (the request
    goes only where the template says), in ASCII, without credentials."""
    from urllib.parse import urlsplit

    if not template.isascii():
        return "an HTTP notification needs an ASCII URL (percent-encode the rest)"
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https"):
        return "an HTTP notification needs an http:// or https:// URL"
    if "{" in parts.netloc or "}" in parts.netloc:
        return "the host of an HTTP notification's URL is written out, not a placeholder"
    if not parts.hostname:
        return "an HTTP notification's URL needs a host"
    if "@" in parts.netloc:
        return "an HTTP notification's URL carries no user or password"
    try:
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as e:
        return f"an HTTP notification's URL has a bad port: {e}"
    return None
