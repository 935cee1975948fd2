"""WMS Dialplan: general settings and procedures.

A procedure (its called numbers and their ordered applications) is `procedures.Procedure`;
the built-in `users` procedure holds every user's extension and the outgoing routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from wildix_ast.model.call_classes import DialplanGeneral
from wildix_ast.model.common import DEFAULT_PROCEDURE, STRICT, empty_list
from wildix_ast.model.feature_codes import FeatureCode, FeatureCodes
from wildix_ast.model.procedures import Procedure as Procedure


class Dialplan(BaseModel):
    """The `dialplan` section: feature codes and procedures."""

    model_config = STRICT

    general: DialplanGeneral = Field(default_factory=DialplanGeneral)
    echo_test: FeatureCode = "*43"
    voicemail: FeatureCode = "*97"
    ring_timeout: Annotated[int, Field(ge=5, le=300)] = 20
    #: WMS services from the handset (DND, forwards): wildix_ast/model/feature_codes.py
    feature_codes: FeatureCodes = Field(default_factory=FeatureCodes)
    procedures: list[Procedure] = Field(default_factory=empty_list)

    @property
    def procedure_names(self) -> set[str]:
        return {DEFAULT_PROCEDURE} | {p.name for p in self.procedures}
