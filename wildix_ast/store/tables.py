"""The store's sections and tables: where each part of the site is kept.

Each `Section` (see `columns`) is a model section with a table of its own, its columns
derived from the model's fields. The lists inside list items that a call-time service looks
up are child tables (a procedure's called numbers, a call group's members, a trunk's DIDs,
an IVR's options, a time frame's rules); a few deeply nested values are JSON text columns,
each named in `docs/store.md` with its reason.

The schema is made by the alembic migrations in `migrations/versions/` only."""

from __future__ import annotations

import json

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from wildix_ast.model.call_classes import ClassSettings
from wildix_ast.model.call_groups import CallGroup
from wildix_ast.model.call_history import CallHistory, CallHistoryBackend, TollLimit
from wildix_ast.model.dialplan import Dialplan, Procedure
from wildix_ast.model.directory import DirectorySettings
from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.groups import Group
from wildix_ast.model.ivrs import Ivr, IvrOption
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.procedures import Number
from wildix_ast.model.provisioning import ProvisioningSettings
from wildix_ast.model.smtp_client import MailQueueSettings, SmtpProfile
from wildix_ast.model.sounds import Sound
from wildix_ast.model.system import System
from wildix_ast.model.time_frames import Holiday, TimeFrame, WeeklyRule
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.model.users import User
from wildix_ast.store.columns import (
    DIGEST,
    ENUM,
    SECRET_KEY,
    Scalar,
    Section,
    child_list,
    key_string,
    metadata,
    single_row,
    top_list,
)

NAME = key_string(40)  # an Identifier (model.fields): trunk, group, procedure names
_ENUM = Scalar(String(ENUM), False, lambda member: member.value)


def _values(kind: TypeEngine[str]) -> Scalar:
    return Scalar(kind, False, str)


# --- the sections ----------------------------------------------------------------------------

SYSTEM = Section("system_settings", "system", System, key=("id",), many=False,
                 flatten={"language_region": "", "sip_rtp": "", "manager": "manager_",
                          "fastagi": "fastagi_", "realtime": "realtime_"},
                 # the Asterisk nodes reading the PostgreSQL realtime tables (issue 22)
                 as_json={"realtime.nodes": "realtime_nodes"},
                 fixed={"id": 1})
LAN_NETWORKS = Section("lan_networks", "sip_rtp.lan_networks", None, key=("position",),
                       parent=SYSTEM, value=("network", _values(String(18))))
LAN_CODECS = Section("sip_codecs", "sip_rtp.lan_codecs", None, key=("position",),
                     parent=SYSTEM, fixed={"scope": "lan"}, value=("codec", _ENUM))
REMOTE_CODECS = Section("sip_codecs", "sip_rtp.remote_codecs", None, key=("position",),
                        parent=SYSTEM, fixed={"scope": "remote"}, value=("codec", _ENUM))
GROUPS = Section("acl_groups", "groups", Group, key=("name",))
_GROUP = (("group_name", "name"),)
GROUP_ALLOW = Section("group_call_classes", "allow", None, key=("position",), parent=GROUPS,
                      parent_key=_GROUP, fixed={"rule": "allow"}, value=("call_class", _ENUM))
GROUP_DENY = Section("group_call_classes", "deny", None, key=("position",), parent=GROUPS,
                     parent_key=_GROUP, fixed={"rule": "deny"}, value=("call_class", _ENUM))
DIALPLAN = Section("dialplan_settings", "dialplan", Dialplan, key=("id",), many=False,
                   flatten={"general": "general_", "feature_codes": "feature_code_"},
                   # None (the country's table) is not [] (none): kept as JSON
                   as_json={f"general.{name}": f"general_{name}" for name in
                            ("emergency_numbers", "number_rules", "short_numbers")},
                   fixed={"id": 1})
CLASS_SETTINGS = Section("call_class_settings", "general.classes", ClassSettings,
                         key=("position",), parent=DIALPLAN)
PROCEDURES = Section("dialplan_procedures", "procedures", Procedure, key=("name",),
                     parent=DIALPLAN)
PROCEDURE_NUMBERS = Section("procedure_numbers", "numbers", Number, key=("position",),
                            parent=PROCEDURES, parent_key=(("procedure", "name"),),
                            as_json={"applications": "applications"})
"""A procedure's called numbers, in order; each number's applications (one of 17 kinds,
each with its own fields, always run together) as JSON."""
USERS = Section("users", "users", User, key=("extension",),
                renames={"group": "group_name"},  # GROUP is an SQL word
                folded={"login_key": "login", "email_key": "email"})


def preferences_json(preferences: Preferences) -> str:
    return preferences.model_dump_json(exclude_defaults=True)


PREFERENCES = Section("user_preferences", "preferences", None, key=(), many=False,
                      parent=USERS, parent_key=(("extension", "extension"),),
                      value=("body", Scalar(Text(), False, preferences_json, json.loads)))
"""One row per user: its preferences as JSON (only what differs from the defaults), so a
preference added later needs no migration; read whole by the call-time look-up."""

TRUNKS = Section("trunks", "trunks", Trunk, key=("name",))
_TRUNK = (("trunk", "name"),)
TRUNK_ADDRESSES = Section("trunk_addresses", "addresses", None, key=("position",),
                          parent=TRUNKS, parent_key=_TRUNK,
                          value=("address", _values(String(15))))
TRUNK_CODECS = Section("trunk_codecs", "codecs", None, key=("position",), parent=TRUNKS,
                       parent_key=_TRUNK, value=("codec", _ENUM))
TRUNK_DIDS = Section("trunk_dids", "dids", None, key=("position",), parent=TRUNKS,
                     parent_key=_TRUNK, value=("did_range", _values(String(48))))
TRUNK_GROUPS = Section("trunk_groups", "trunk_groups", TrunkGroup, key=("name",))
TRUNK_GROUP_MEMBERS = Section("trunk_group_members", "trunks", None, key=("position",),
                              parent=TRUNK_GROUPS, parent_key=(("trunk_group", "name"),),
                              value=("trunk", _values(NAME)))
TIME_FRAMES = Section("time_frames", "time_frames", TimeFrame, key=("name",))
_TIME_FRAME = (("time_frame", "name"),)
WEEKLY_RULES = Section("time_frame_rules", "weekly", WeeklyRule, key=("position",),
                       parent=TIME_FRAMES, parent_key=_TIME_FRAME,
                       renames={"start": "start_time", "end": "end_time"})  # END: SQL
RULE_DAYS = Section("time_frame_rule_days", "days", None, key=("position",),
                    parent=WEEKLY_RULES,
                    parent_key=(("time_frame", "time_frame"), ("rule", "position")),
                    value=("day", _ENUM))
HOLIDAYS = Section("time_frame_holidays", "holidays", Holiday, key=("position",),
                   parent=TIME_FRAMES, parent_key=_TIME_FRAME)
CALL_GROUPS = Section("call_groups", "call_groups", CallGroup, key=("name",))
CALL_GROUP_MEMBERS = Section("call_group_members", "members", None, key=("position",),
                             parent=CALL_GROUPS, parent_key=(("call_group", "name"),),
                             value=("extension", _values(key_string(8))))
IVRS = Section("ivrs", "ivrs", Ivr, key=("name",),
               # one optional target each: a JSON object rather than four nullable columns
               as_json={"on_timeout": "on_timeout", "on_invalid": "on_invalid"})
IVR_OPTIONS = Section("ivr_options", "options", IvrOption, key=("position",), parent=IVRS,
                      parent_key=(("ivr", "name"),),
                      renames={"user": "user_extension"})  # USER is an SQL word
SOUNDS = Section("sounds", "sounds", Sound, key=("name",),
                 as_json={"files": "files"})  # language -> source file: read whole
"""The sounds' source files (their converted audio: `sound_audio`, `sound_files`)."""
CALL_HISTORY = Section("call_history_settings", "call_history", CallHistory, key=("id",),
                       many=False, fixed={"id": 1})
CALL_HISTORY_BACKENDS = Section("call_history_backends", "backends", CallHistoryBackend,
                                key=("name",), parent=CALL_HISTORY,
                                renames={"table": "table_name", "user": "user_name"},
                                secrets=("password",))
CALL_HISTORY_LIMITS = Section("call_history_limits", "limits", TollLimit,
                              key=("call_class", "scope", "name"), parent=CALL_HISTORY)
"""The call history's backends (wildix_ast.model.call_history); a password lives in the vault
(`vault.cdr_password_key`, migration 0018 moved them there), left out of exports without
--with-secrets."""
SMTP_PROFILES = Section("smtp_profiles", "smtp_profiles", SmtpProfile, key=("name",),
                        renames={"user": "user_name"},  # USER is an SQL word
                        secrets=("password",))
"""WMS Client SMTP; each password lives in the vault (`vault.smtp_password_key`)."""
DIRECTORY = Section("directory_settings", "directory", DirectorySettings, key=("id",),
                    many=False, flatten={"attributes": "attribute_"}, fixed={"id": 1})
DIRECTORY_SERVERS = Section("directory_servers", "servers", None, key=("position",),
                            parent=DIRECTORY,
                            value=("server", Scalar(String(261), False, None)))

FAX_SERVER = Section("fax_server_settings", "fax_server", FaxServer, key=("id",), many=False,
                     fixed={"id": 1})
"""WMS Serveur FAX/SMS (Fax2Mail's copy address, how long finished jobs are kept)."""
MAIL2FAX_PROFILES = Section("mail2fax_profiles", "mail2fax_profiles", Mail2FaxProfile,
                            key=("name",), renames={"user": "user_name"},
                            as_json={"allowed_senders": "allowed_senders"},
                            secrets=("password", "protection_password"))
"""WMS Serveur FAX/SMS, Mail2Fax; both passwords live in the vault
(`vault.mail2fax_secret_key`)."""
MAIL_QUEUE = Section("mail_queue_settings", "mail_queue", MailQueueSettings, key=("id",),
                     many=False, fixed={"id": 1})
"""The mail queue's housekeeping (how long sent and failed mails are kept)."""
PROVISIONING = Section("provisioning_settings", "provisioning", ProvisioningSettings,
                       key=("id",), many=False, fixed={"id": 1})
"""WMS Devices: the provisioning server and the network settings pushed to phones."""

SECTIONS: tuple[Section, ...] = (
    SYSTEM, LAN_NETWORKS, LAN_CODECS, REMOTE_CODECS, GROUPS, GROUP_ALLOW, GROUP_DENY,
    DIALPLAN, CLASS_SETTINGS, PROCEDURES, PROCEDURE_NUMBERS, USERS, PREFERENCES,
    TRUNKS, TRUNK_ADDRESSES, TRUNK_CODECS, TRUNK_DIDS, TRUNK_GROUPS, TRUNK_GROUP_MEMBERS,
    TIME_FRAMES, WEEKLY_RULES, RULE_DAYS, HOLIDAYS, CALL_GROUPS, CALL_GROUP_MEMBERS,
    IVRS, IVR_OPTIONS, SOUNDS, DIRECTORY, DIRECTORY_SERVERS,
    CALL_HISTORY, CALL_HISTORY_BACKENDS, CALL_HISTORY_LIMITS, SMTP_PROFILES, FAX_SERVER,
    MAIL2FAX_PROFILES, MAIL_QUEUE, PROVISIONING)
"""Parents before children, referenced before referencing (users name groups)."""


site_state = Table(
    "site_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(DIGEST), nullable=True),
    CheckConstraint("id = 1", name="ck_site_state_single_row"),
)
"""One row, always present: every import updates it first, which serialises imports on
every database (row lock on PostgreSQL/MariaDB, write lock on SQLite). `revision` grows
with every import that changed something; `digest` is the stored site's (see
`Store.import_site`)."""

system_settings = single_row(SYSTEM)
lan_networks = Table(
    "lan_networks", metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    *LAN_NETWORKS.columns(),
)
sip_codecs = Table(
    "sip_codecs", metadata,
    Column("scope", String(6), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    *LAN_CODECS.columns(),
    CheckConstraint("scope IN ('lan', 'remote')", name="ck_sip_codecs_scope"),
)
dialplan_settings = single_row(DIALPLAN)
dialplan_procedures = top_list(PROCEDURES, "name")
acl_groups = top_list(GROUPS, "name")
users = top_list(USERS, "extension", "email_key", "login_key", "office_did", "fax_did",
                 constraints=(
    # A user's group must exist: enforced by the database too.
    ForeignKeyConstraint(["group_name"], ["acl_groups.name"], name="fk_users_group_name"),))
group_call_classes = child_list(GROUP_ALLOW, "acl_groups", ("group_name", NAME),
                                scope=("rule", 5))
call_class_settings = Table(
    "call_class_settings", metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    *CLASS_SETTINGS.columns(),
)
procedure_numbers = child_list(PROCEDURE_NUMBERS, "dialplan_procedures", ("procedure", NAME),
                               index="number")
trunks = top_list(TRUNKS, "name")
trunk_addresses = child_list(TRUNK_ADDRESSES, "trunks", ("trunk", NAME))
trunk_codecs = child_list(TRUNK_CODECS, "trunks", ("trunk", NAME))
trunk_dids = child_list(TRUNK_DIDS, "trunks", ("trunk", NAME))
trunk_groups = top_list(TRUNK_GROUPS, "name")
trunk_group_members = child_list(TRUNK_GROUP_MEMBERS, "trunk_groups", ("trunk_group", NAME))
time_frames = top_list(TIME_FRAMES, "name")
time_frame_rules = child_list(WEEKLY_RULES, "time_frames", ("time_frame", NAME))
time_frame_rule_days = child_list(RULE_DAYS, "time_frame_rules", ("time_frame", NAME),
                                  ("rule", Integer()))
time_frame_holidays = child_list(HOLIDAYS, "time_frames", ("time_frame", NAME))
call_groups = top_list(CALL_GROUPS, "name")
call_group_members = child_list(CALL_GROUP_MEMBERS, "call_groups", ("call_group", NAME),
                                index="extension")
ivrs = top_list(IVRS, "name")
ivr_options = child_list(IVR_OPTIONS, "ivrs", ("ivr", NAME))
sounds = top_list(SOUNDS, "name")
user_preferences = Table(
    "user_preferences", metadata,
    Column("extension", key_string(8), primary_key=True),
    *PREFERENCES.columns(),
    ForeignKeyConstraint(["extension"], ["users.extension"],
                         name="fk_user_preferences_extension"),
)
smtp_profiles = top_list(SMTP_PROFILES, "name")
call_history_settings = single_row(CALL_HISTORY)
call_history_backends = top_list(CALL_HISTORY_BACKENDS, "name")
call_history_limits = top_list(CALL_HISTORY_LIMITS)
fax_server_settings = single_row(FAX_SERVER)
mail2fax_profiles = top_list(MAIL2FAX_PROFILES, "name")
mail_queue_settings = single_row(MAIL_QUEUE)
provisioning_settings = single_row(PROVISIONING)
directory_settings = single_row(DIRECTORY)
directory_servers = Table(
    "directory_servers", metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    *DIRECTORY_SERVERS.columns(),
)
directory_users = Table(
    "directory_users", metadata,
    Column("extension", key_string(8), primary_key=True),
    Column("entry_uuid", key_string(64), nullable=False),
    Column("dn", Text, nullable=False),
    Column("change_mark", String(128), nullable=True),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("entry_uuid", name="uq_directory_users_entry_uuid"),
)
"""The users the directory owns (their origin): a sync changes and removes only these. By
the entry's UUID, which survives renames and moves in the directory tree."""
directory_state = Table(
    "directory_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("server", String(261), nullable=False),
    Column("change_mark", String(128), nullable=True),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    Column("full", Integer, nullable=False),
    Column("users", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    CheckConstraint("id = 1", name="ck_directory_state_single_row"),
)
"""The last successful sync: the server it read and its change mark (where the next
incremental sync starts), what it did."""
devices = Table(
    "devices", metadata,
    Column("mac", key_string(12), primary_key=True),
    Column("vendor", String(ENUM), nullable=False),
    Column("model", String(80), nullable=True),
    Column("extension", key_string(8), nullable=True),
    Column("line", Integer, nullable=False),
    Column("ip", String(45), nullable=True),
    Column("firmware", String(80), nullable=True),
    Column("last_seen", DateTime(timezone=True), nullable=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
)
"""The phones (WMS Devices), by MAC; their provisioning credentials are kept hashed as vault
secrets (`device:<mac>:provisioning`, `store.devices.credential_hash`). `extension`: the
user the phone is assigned to."""
provisioning_state = Table(
    "provisioning_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("enrol_until", DateTime(timezone=True), nullable=True),
    Column("enrol_vendors", String(80), nullable=False),
    CheckConstraint("id = 1", name="ck_provisioning_state_single_row"),
)
"""The enrolment window (`wildix-ast device enrol`): until when unknown phones of the listed
vendors (comma-separated) are added as unassigned devices."""
secrets = Table(
    "secrets", metadata,
    Column("key", key_string(SECRET_KEY), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Generated secrets (see wildix_ast.store.vault): kept across imports."""
def _blob() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


sound_audio = Table(
    "sound_audio", metadata,
    Column("digest", key_string(64), primary_key=True),
    Column("wav", _blob(), nullable=False),
    Column("wav16", _blob(), nullable=False),
)
"""Converted sounds (wildix_ast.sounds.audio), by the digest of their source file."""
sound_files = Table(
    "sound_files", metadata,
    Column("sound", key_string(64), primary_key=True),
    Column("language", key_string(16), primary_key=True),
    Column("digest", key_string(64), ForeignKey("sound_audio.digest",
                                                name="fk_sound_files_digest"), nullable=False),
)
"""Which audio each file of the stored site's sounds is (replaced on every import that
brings the audio)."""
imports = Table(
    "imports", metadata,
    Column("id", Integer, primary_key=True),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("source_sha256", String(64), nullable=True),
    Column("users", Integer, nullable=False),
    Column("groups", Integer, nullable=False),
    Column("procedures", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("revision", Integer, nullable=True),
)
"""The history of imports: when, the SHA-256 of the text (never the text), what changed,
and the store revision it left."""

STORE_TABLES: tuple[Table, ...] = (
    site_state, system_settings, lan_networks, sip_codecs, dialplan_settings,
    call_class_settings, dialplan_procedures, procedure_numbers, acl_groups,
    group_call_classes, users, user_preferences, trunks, trunk_addresses, trunk_codecs,
    trunk_dids, trunk_groups, trunk_group_members, time_frames, time_frame_rules,
    time_frame_rule_days, time_frame_holidays, call_groups, call_group_members, ivrs,
    ivr_options, sounds, secrets, sound_audio, sound_files, imports, directory_settings,
    directory_servers, directory_users, directory_state, devices, call_history_settings,
    call_history_backends, call_history_limits, smtp_profiles, fax_server_settings,
    mail2fax_profiles, mail_queue_settings, provisioning_settings, provisioning_state)
"""Every table of the store, parents before children."""
