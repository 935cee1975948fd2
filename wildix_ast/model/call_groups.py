"""WMS Call groups ('Groupes d'appels'): users rung together or one after the other.

Members are rung on their phones directly, as WMS call groups ignore the members' personal
forwards and voicemail; what happens when nobody answers is the procedure's next
application."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Extension, FreeText, Identifier


class Strategy(StrEnum):
    RING_ALL = "ring_all"
    """Every member at once, for `timeout` seconds."""
    HUNT = "hunt"
    """Members in order, `member_timeout` seconds each."""
    RANDOM = "random"
    """Like hunt, from a member picked at random."""
    ROUND_ROBIN = "round_robin"
    """Like hunt, from the member after the one the previous call started with."""


class CallGroup(BaseModel):
    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    members: Annotated[list[Extension], Field(min_length=1)]
    strategy: Strategy = Strategy.RING_ALL
    member_timeout: Annotated[int, Field(ge=3, le=300)] = 15
    """Seconds each member rings (hunt, random, round robin)."""
    timeout: Annotated[int, Field(ge=3, le=3600)] = 60
    """Seconds the whole group rings at most."""

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        repeated = sorted({m for i, m in enumerate(self.members) if m in self.members[:i]})
        if repeated:
            raise ValueError(f"member {', '.join(repeated)} listed twice")
        return self
