"""WMS Users -> Groups: ACL groups. Rules and call classes come with the dialplan work."""

from __future__ import annotations

from pydantic import BaseModel

from wildix_ast.fields import FreeText, Identifier
from wildix_ast.model import STRICT


class Group(BaseModel):
    """An ACL group (WMS 'Profil'); every user belongs to exactly one."""

    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
