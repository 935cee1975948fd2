"""WMS IVR ('SVI'): a prompt, then the caller's digit chooses where the call goes."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Extension, FreeText, Identifier, pattern

Digit = Annotated[str, pattern(r"[0-9*#]", "key (one of 0-9, * or #)")]

TARGET_FIELDS = ("user", "call_group", "procedure", "voicemail")


class IvrTarget(BaseModel):
    """Exactly one of: a user (rung through the shared call-user subroutine), a call group,
    a procedure (entered with the called number), a user's voicemail."""

    model_config = STRICT

    user: Extension | None = None
    call_group: Identifier | None = None
    procedure: Identifier | None = None
    voicemail: Extension | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = [name for name in TARGET_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(TARGET_FIELDS)}")
        return self


class IvrOption(IvrTarget):
    digit: Digit


class Ivr(BaseModel):
    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    prompt: Identifier
    """A sound (`sounds[].name`) played while the caller may already press a key."""
    options: Annotated[list[IvrOption], Field(min_length=1)]
    timeout: Annotated[int, Field(ge=1, le=60)] = 5
    """Seconds to wait for a key after the prompt."""
    repeat: Annotated[int, Field(ge=0, le=5)] = 2
    """How many more times the prompt plays after no key or a wrong key."""
    on_timeout: IvrTarget | None = None
    """Where the call goes once the repeats are spent without a key (none: the procedure's
    next application)."""
    on_invalid: IvrTarget | None = None
    """Where the call goes once the repeats are spent on wrong keys."""

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        digits = [o.digit for o in self.options]
        repeated = sorted({d for i, d in enumerate(digits) if d in digits[:i]})
        if repeated:
            raise ValueError(f"key {', '.join(repeated)} used twice")
        return self
