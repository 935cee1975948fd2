"""WMS Time frames ('Plages horaires'): weekly opening hours and holidays.

A time frame matches when the current moment, in the PBX time zone
(`system.language_region.timezone`), falls in one of its weekly rules and on none of its
holidays. Procedures test it with the 'check time frame' application."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import FreeText, Identifier, pattern


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


def _quoted_time(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 9:30 as 570 (base 60)
        raise ValueError("write times in quotes, like \"09:30\"")
    return value


ClockTime = Annotated[str, BeforeValidator(_quoted_time), pattern(
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]", "time of day (HH:MM, 00:00 to 23:59)")]

_MINUTES = re.compile(r"(\d\d):(\d\d)")


def minutes(value: str) -> int:
    match = _MINUTES.fullmatch(value)
    assert match is not None
    return int(match[1]) * 60 + int(match[2])


class WeeklyRule(BaseModel):
    """Open on `days` from `start` to `end` (both minutes included)."""

    model_config = STRICT

    days: Annotated[list[Weekday], Field(min_length=1)]
    start: ClockTime = "00:00"
    end: ClockTime = "23:59"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if minutes(self.end) <= minutes(self.start):
            raise ValueError(f"end {self.end} is not after start {self.start} (a rule over "
                             "midnight is two rules)")
        if len(set(self.days)) != len(self.days):
            raise ValueError("a day is listed twice")
        return self


class Holiday(BaseModel):
    """A closed day, or the closed days from `date` to `until` (both included)."""

    model_config = STRICT

    date: dt.date
    until: dt.date | None = None
    description: FreeText | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.until is not None and self.until < self.date:
            raise ValueError(f"until {self.until} is before date {self.date}")
        return self

    @property
    def last(self) -> dt.date:
        return self.until or self.date


class TimeFrame(BaseModel):
    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    weekly: Annotated[list[WeeklyRule], Field(min_length=1)]
    holidays: list[Holiday] = Field(default_factory=empty_list)
