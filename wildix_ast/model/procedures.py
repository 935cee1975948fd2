"""WMS Dialplan procedures: called numbers, each with its ordered applications.

A procedure is an ordered list of called numbers (exact numbers or WMS patterns: `X` any
digit, `Z` 1-9, `N` 2-9, `[1-5]` a set, a final `.` one or more characters); the first
number that matches a call wins, and its applications run in order. As in WMS, when an
application fails or times out (nobody answers, a trunk refuses) the next one runs; a call
that was answered ends with it.

Users' calls enter their procedure (`users` by default, which also holds every user's
extension and the outgoing routes); calls from a trunk enter the trunk's procedure."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.call_classes import CallClass
from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import (
    Extension,
    FreeText,
    Identifier,
    Language,
    PhoneNumber,
    Width,
    pattern,
)

_TOKEN = r"(?:[0-9*#XZN]|\[(?:[0-9](?:-[0-9])?)+\])"
CalledNumber = Annotated[str, Width(32, exact=True), pattern(
    rf"\+?{_TOKEN}{{1,24}}\.?",
    "called number (digits, '*', '#', an optional leading '+', X, Z, N, [1-5] sets, "
    "a final '.')")]
CallerName = Annotated[str, Field(min_length=1, max_length=40), pattern(
    r"[\w.'+-](?:[\w .'+-]*[\w.'+-])?", "caller name (letters, digits, spaces, . ' + -)")]
"""Printed into Set(CALLERID(name)=...): no comma, parenthesis or '$' can reach it."""
Prefix = Annotated[str, pattern(r"\+?[0-9]{0,20}", "digits to prepend "
                                             "(an optional '+' and up to 20 digits)")]


def is_pattern(number: str) -> bool:
    return any(c in number for c in "XZN[.")


class _App(BaseModel):
    model_config = STRICT


class Answer(_App):
    app: Literal["answer"]


class SetCallClass(_App):
    """The class of the external calls this number's trunk applications place: the
    caller's ACL group must allow it (a trunk's caller has no group, so is refused)."""

    app: Literal["set_call_class"]
    call_class: CallClass


class CheckTimeFrame(_App):
    """Go to `if_match` when the time frame matches, to `if_no_match` when not; either
    left out continues with the next application."""

    app: Literal["check_time_frame"]
    time_frame: Identifier
    if_match: Identifier | None = None
    if_no_match: Identifier | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if self.if_match is None and self.if_no_match is None:
            raise ValueError("give if_match or if_no_match (a procedure to go to)")
        return self


class DialUser(_App):
    app: Literal["dial_user"]
    user: Extension


class CallGroupApp(_App):
    app: Literal["call_group"]
    call_group: Identifier


class IvrApp(_App):
    app: Literal["ivr"]
    ivr: Identifier


class Greeting(StrEnum):
    UNAVAILABLE = "unavailable"
    BUSY = "busy"
    NONE = "none"


class VoicemailApp(_App):
    app: Literal["voicemail"]
    user: Extension
    greeting: Greeting = Greeting.UNAVAILABLE


class DialTrunk(_App):
    """The (corrected) called number leaves on this trunk."""

    app: Literal["dial_trunk"]
    trunk: Identifier


class DialTrunkGroup(_App):
    app: Literal["dial_trunk_group"]
    trunk_group: Identifier


class SetCallerNumber(_App):
    app: Literal["set_caller_number"]
    number: PhoneNumber


class SetCallerName(_App):
    app: Literal["set_caller_name"]
    name: CallerName


class CorrectCalledNumber(_App):
    """Remove `remove` leading characters of the called number, then put `prepend` in
    front (WMS 'Corriger le numéro appelé')."""

    app: Literal["correct_called_number"]
    remove: Annotated[int, Field(ge=0, le=20)] = 0
    prepend: Prefix = ""


class SetLanguage(_App):
    app: Literal["set_language"]
    language: Language


class PlaySound(_App):
    app: Literal["play_sound"]
    sound: Identifier


class Wait(_App):
    app: Literal["wait"]
    seconds: Annotated[int, Field(ge=1, le=600)]


class GotoProcedure(_App):
    """Continue in another procedure with the same called number."""

    app: Literal["goto_procedure"]
    procedure: Identifier


class Hangup(_App):
    app: Literal["hangup"]
    cause: Annotated[int, Field(ge=1, le=127)] | None = None
    """A Q.850 cause (17: busy, 21: rejected, 34: congestion); none: normal clearing."""


Application = Annotated[
    Answer | SetCallClass | CheckTimeFrame | DialUser | CallGroupApp | IvrApp | VoicemailApp
    | DialTrunk | DialTrunkGroup | SetCallerNumber | SetCallerName | CorrectCalledNumber
    | SetLanguage | PlaySound | Wait | GotoProcedure | Hangup,
    Field(discriminator="app")]


class Number(BaseModel):
    """One called number of a procedure and what its calls do."""

    model_config = STRICT

    number: CalledNumber
    applications: Annotated[list[Application], Field(min_length=1)]


class Procedure(BaseModel):
    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    numbers: list[Number] = Field(default_factory=empty_list)

    def goes_to(self) -> list[tuple[int, int, str]]:
        """(number index, application index, procedure) of every jump to a procedure."""
        found: list[tuple[int, int, str]] = []
        for i, number in enumerate(self.numbers):
            for j, app in enumerate(number.applications):
                if isinstance(app, GotoProcedure):
                    found.append((i, j, app.procedure))
                elif isinstance(app, CheckTimeFrame):
                    found += [(i, j, p) for p in (app.if_match, app.if_no_match) if p]
        return found
