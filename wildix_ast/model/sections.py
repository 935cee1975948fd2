"""The sections of a site, one field per WMS menu, without the rules that span them
(`model.site.Site` adds those). The cross-section rules (`routing`, `dialplan_rules`) read
`Sections`, so that `Site`'s validator can call them without an import circle."""

from __future__ import annotations

from pydantic import BaseModel, Field

from wildix_ast.model.call_groups import CallGroup
from wildix_ast.model.call_history import CallHistory
from wildix_ast.model.common import DEFAULT_GROUP, STRICT, empty_list
from wildix_ast.model.dialplan import Dialplan
from wildix_ast.model.directory import DirectorySettings
from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.groups import Group
from wildix_ast.model.ivrs import Ivr
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.provisioning import ProvisioningSettings
from wildix_ast.model.smtp_client import MailQueueSettings, SmtpProfile
from wildix_ast.model.sounds import Sound
from wildix_ast.model.system import System
from wildix_ast.model.time_frames import TimeFrame
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.model.users import User


class Sections(BaseModel):
    """A PBX's sections as the WMS administrator sees them."""

    model_config = STRICT

    system: System = Field(default_factory=System)
    groups: list[Group] = Field(default_factory=lambda: [Group(name=DEFAULT_GROUP)])
    dialplan: Dialplan = Field(default_factory=Dialplan)
    users: list[User] = Field(default_factory=empty_list)
    trunks: list[Trunk] = Field(default_factory=empty_list)
    trunk_groups: list[TrunkGroup] = Field(default_factory=empty_list)
    sounds: list[Sound] = Field(default_factory=empty_list)
    time_frames: list[TimeFrame] = Field(default_factory=empty_list)
    call_groups: list[CallGroup] = Field(default_factory=empty_list)
    ivrs: list[Ivr] = Field(default_factory=empty_list)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    call_history: CallHistory = Field(default_factory=CallHistory)
    smtp_profiles: list[SmtpProfile] = Field(default_factory=empty_list)
    fax_server: FaxServer = Field(default_factory=FaxServer)
    mail2fax_profiles: list[Mail2FaxProfile] = Field(default_factory=empty_list)
    mail_queue: MailQueueSettings = Field(default_factory=MailQueueSettings)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)
