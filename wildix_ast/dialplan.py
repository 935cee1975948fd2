"""WMS Dialplan: general settings and procedures.

A procedure (its called numbers and their ordered applications) is `procedures.Procedure`;
the built-in `users` procedure holds every user's extension and the outgoing routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from wildix_ast.call_classes import DialplanGeneral
from wildix_ast.fields import Width, _pattern
from wildix_ast.model import DEFAULT_PROCEDURE, STRICT
from wildix_ast.procedures import Procedure as Procedure  # where the store finds it

FeatureCode = Annotated[str, Width(8), _pattern(
    r"\*[0-9]{1,4}|[0-9]{2,8}", "feature code ('*' and up to 4 digits, or 2 to 8 digits)")]


class Dialplan(BaseModel):
    """The `dialplan` section: feature codes and procedures."""

    model_config = STRICT

    general: DialplanGeneral = Field(default_factory=DialplanGeneral)
    echo_test: FeatureCode = "*43"
    voicemail: FeatureCode = "*97"
    ring_timeout: Annotated[int, Field(ge=5, le=300)] = 20
    procedures: list[Procedure] = Field(default_factory=list)

    @property
    def procedure_names(self) -> set[str]:
        return {DEFAULT_PROCEDURE} | {p.name for p in self.procedures}
