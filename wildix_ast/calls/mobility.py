"""WMS mobility: also ring the user's mobile after a delay, optionally confirmed with `*`.

Pure: which mobile leg a call to a user gets (or none). The dialplan side (a Local channel
beside the phone, the user's own outgoing route, the confirmation) is
wildix_ast/asterisk/service_contexts.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.calls import variables as v
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.users import User


@dataclass(frozen=True)
class MobilityLeg:
    mobile: str
    delay: int
    confirm: bool
    #: the user's ACL group: the mobile is called with the user's own rights
    group: str
    #: shown to the mobile's trunk as the caller (the trunk's caller-ID rules apply)
    office_did: str

    def variables(self) -> dict[str, str]:
        return {v.MOBILE: self.mobile, v.MOBILITY_DELAY: str(self.delay),
                v.MOBILITY_CONFIRM: "1" if self.confirm else "0",
                v.MOBILITY_GROUP: self.group, v.MOBILITY_DID: self.office_did}


NO_LEG = {v.MOBILE: ""}


def mobility_leg_of(user: User, preferences: Preferences, call_type: str) -> MobilityLeg | None:
    """The mobile leg of a call of `call_type` to `user`, or None (mobility off for that
    call type, or no mobile number)."""
    functions = preferences.of_call_type(call_type)
    if not functions.mobility or user.mobile is None:
        return None
    return MobilityLeg(mobile=user.mobile, delay=functions.mobility_delay,
                       confirm=functions.mobility_confirmation, group=user.group,
                       office_did=user.office_did or "")
