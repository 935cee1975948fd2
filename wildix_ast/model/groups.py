"""WMS Users -> Groups: ACL groups, each allowing or denying call classes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from wildix_ast.model.call_classes import DEFAULT_ALLOWED, CallClass
from wildix_ast.model.common import STRICT, Srtp, empty_list
from wildix_ast.model.fields import FreeText, Identifier


class Group(BaseModel):
    """An ACL group (WMS 'Profil'); every user belongs to exactly one."""

    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    allow: list[CallClass] = Field(default_factory=empty_list)
    """Classes granted beyond the fail-closed defaults (international, premium)."""
    deny: list[CallClass] = Field(default_factory=empty_list)
    """Default classes taken away; emergency cannot be (it always goes out)."""
    srtp: Srtp | None = None
    """SRTP for this group's phones; None: the site's (`system.sip_rtp.srtp`)."""

    @property
    def allowed(self) -> frozenset[CallClass]:
        return (DEFAULT_ALLOWED | set(self.allow)) - set(self.deny) | {CallClass.EMERGENCY}
