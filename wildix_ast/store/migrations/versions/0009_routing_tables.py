"""The JSON documents become tables: trunks, trunk groups, sounds, time frames, call groups,
IVRs, the groups' call classes, the dialplan's general settings and feature codes, and the
procedures' called numbers; their ordered lists are child tables. Every document's content
is moved into rows, then `documents` is dropped (the downgrade makes it again from them).

The rows' digests are left empty: the next import that changes the site writes these rows
once (a re-import of the same site changes nothing: the site's own digest is kept).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text, names compared byte for byte (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                          "mysql", "mariadb")


def _name() -> sa.types.TypeEngine[str]:
    return _key(40)


def _top(name: str, *columns: sa.Column[Any]) -> None:
    """A top-level list: id, position, the item's columns, its digest; name unique."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", _name(), nullable=False),
        *columns,
        sa.Column("digest", sa.String(32), nullable=True),
        sa.UniqueConstraint("name", name=f"uq_{name}_name"),
        sa.UniqueConstraint("position", name=f"uq_{name}_position"),
        **_MYSQL,
    )


def _child(name: str, parent: str, keys: list[tuple[str, sa.types.TypeEngine[Any]]],
           referenced: list[str], *columns: sa.Column[Any]) -> None:
    """A list inside a list item: keyed by its parent's key and its position."""
    op.create_table(
        name,
        *(sa.Column(column, kind, primary_key=True) for column, kind in keys),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        *columns,
        sa.ForeignKeyConstraint([k for k, _ in keys], [f"{parent}.{c}" for c in referenced],
                                name=f"fk_{name}_{keys[-1][0]}"),
        **_MYSQL,
    )


_FEATURE_CODES = {"status": "60", "forward_busy": "61", "forward_unavailable": "62",
                  "forward_all": "63", "hotline": "*50"}
"""The WMS codes `FeatureCodes` gives by default (a document keeps only those set)."""
_GENERAL_JSON = ("emergency_numbers", "number_rules", "short_numbers")


def _create() -> None:
    _top("trunks",
         sa.Column("description", sa.String(80), nullable=True),
         sa.Column("auth", sa.String(16), nullable=False),
         sa.Column("host", sa.Text, nullable=False),
         sa.Column("port", sa.Integer, nullable=False),
         sa.Column("registrar", sa.Text, nullable=True),
         sa.Column("outbound_proxy", sa.Text, nullable=True),
         sa.Column("username", sa.Text, nullable=True),
         sa.Column("secret", sa.Text, nullable=True),
         sa.Column("caller_id", sa.String(16), nullable=False),
         sa.Column("main_number", _key(21), nullable=True),
         sa.Column("caller_name", sa.String(16), nullable=True),
         sa.Column("number_format", sa.String(16), nullable=False),
         sa.Column("max_calls", sa.Integer, nullable=True),
         sa.Column("procedure", _name(), nullable=True),
         sa.Column("qualify_frequency", sa.Integer, nullable=False),
         sa.Column("setup_timeout", sa.Integer, nullable=False))
    trunk = [("trunk", _name())]
    _child("trunk_addresses", "trunks", trunk, ["name"],
           sa.Column("address", sa.String(15), nullable=False))
    _child("trunk_codecs", "trunks", trunk, ["name"],
           sa.Column("codec", sa.String(16), nullable=False))
    _child("trunk_dids", "trunks", trunk, ["name"],
           sa.Column("did_range", sa.String(48), nullable=False))
    _top("trunk_groups")
    _child("trunk_group_members", "trunk_groups", [("trunk_group", _name())], ["name"],
           sa.Column("trunk", _name(), nullable=False))
    _top("time_frames", sa.Column("description", sa.String(80), nullable=True))
    frame = [("time_frame", _name())]
    _child("time_frame_rules", "time_frames", frame, ["name"],
           sa.Column("start_time", sa.Text, nullable=False),
           sa.Column("end_time", sa.Text, nullable=False),
           sa.Column("digest", sa.String(32), nullable=True))
    _child("time_frame_rule_days", "time_frame_rules",
           [("time_frame", _name()), ("rule", sa.Integer())], ["time_frame", "position"],
           sa.Column("day", sa.String(16), nullable=False))
    _child("time_frame_holidays", "time_frames", frame, ["name"],
           sa.Column("date", sa.String(10), nullable=False),
           sa.Column("until", sa.String(10), nullable=True),
           sa.Column("description", sa.String(80), nullable=True),
           sa.Column("digest", sa.String(32), nullable=True))
    _top("call_groups",
         sa.Column("description", sa.String(80), nullable=True),
         sa.Column("strategy", sa.String(16), nullable=False),
         sa.Column("member_timeout", sa.Integer, nullable=False),
         sa.Column("timeout", sa.Integer, nullable=False))
    _child("call_group_members", "call_groups", [("call_group", _name())], ["name"],
           sa.Column("extension", _key(8), nullable=False))
    op.create_index("ix_call_group_members_extension", "call_group_members", ["extension"])
    _top("ivrs",
         sa.Column("description", sa.String(80), nullable=True),
         sa.Column("prompt", _name(), nullable=False),
         sa.Column("timeout", sa.Integer, nullable=False),
         sa.Column("repeat", sa.Integer, nullable=False),
         sa.Column("on_timeout", sa.Text, nullable=True),
         sa.Column("on_invalid", sa.Text, nullable=True))
    _child("ivr_options", "ivrs", [("ivr", _name())], ["name"],
           sa.Column("user_extension", _key(8), nullable=True),
           sa.Column("call_group", _name(), nullable=True),
           sa.Column("procedure", _name(), nullable=True),
           sa.Column("voicemail", _key(8), nullable=True),
           sa.Column("digit", sa.Text, nullable=False),
           sa.Column("digest", sa.String(32), nullable=True))
    _top("sounds",
         sa.Column("description", sa.String(80), nullable=True),
         sa.Column("kind", sa.String(16), nullable=False),
         sa.Column("files", sa.Text, nullable=False))
    op.create_table(
        "group_call_classes",
        sa.Column("group_name", _name(), primary_key=True),
        sa.Column("rule", sa.String(5), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("call_class", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["group_name"], ["acl_groups.name"],
                                name="fk_group_call_classes_group_name"),
        **_MYSQL,
    )
    op.create_table(
        "call_class_settings",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("call_class", sa.String(16), nullable=False),
        sa.Column("trunk_group", sa.Text, nullable=True),
        sa.Column("max_calls", sa.Integer, nullable=True),
        sa.Column("digest", sa.String(32), nullable=True),
        **_MYSQL,
    )
    _child("procedure_numbers", "dialplan_procedures", [("procedure", _name())], ["name"],
           sa.Column("number", _key(32), nullable=False),
           sa.Column("applications", sa.Text, nullable=False),
           sa.Column("digest", sa.String(32), nullable=True))
    op.create_index("ix_procedure_numbers_number", "procedure_numbers", ["number"])
    with op.batch_alter_table("dialplan_settings") as table:
        for name in ("national_prefix", "international_prefix", "outside_line_prefix",
                     *_GENERAL_JSON, "trunk_group"):
            table.add_column(sa.Column(f"general_{name}", sa.Text, nullable=True))
        for name, code in _FEATURE_CODES.items():
            table.add_column(sa.Column(f"feature_code_{name}", sa.String(8), nullable=False,
                                       server_default=code))


# --- moving the documents into rows ----------------------------------------------------------

def _text(value: Any) -> str | None:
    """A JSON column's text, as the store writes it (compact, unicode kept)."""
    return None if value is None else json.dumps(value, ensure_ascii=False,
                                                 separators=(",", ":"))


def _insert(connection: sa.Connection, name: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        table = sa.table(name, *(sa.column(c) for c in rows[0]))
        connection.execute(sa.insert(table), rows)


def _values(parent: dict[str, Any], items: Iterable[Any], column: str) -> list[dict[str, Any]]:
    """The rows of a list of plain values inside the item whose key is `parent`."""
    return [{**parent, "position": i, column: value} for i, value in enumerate(items)]


def _target(data: dict[str, Any] | None) -> str | None:
    return None if data is None else _text({k: v for k, v in data.items() if v is not None})


def _move(connection: sa.Connection, documents: dict[str, Any]) -> None:
    rows: dict[str, list[dict[str, Any]]] = {}

    def add(table: str, new: Iterable[dict[str, Any]]) -> None:
        rows.setdefault(table, []).extend(new)

    for i, t in enumerate(documents.get("trunks", [])):
        add("trunks", [{
            "position": i, "name": t["name"], "description": t.get("description"),
            "auth": t["auth"], "host": t["host"], "port": t.get("port", 5060),
            "registrar": t.get("registrar"), "outbound_proxy": t.get("outbound_proxy"),
            "username": t.get("username"), "secret": t.get("secret"),
            "caller_id": t.get("caller_id", "office_did"), "main_number": t.get("main_number"),
            "caller_name": t.get("caller_name"),
            "number_format": t.get("number_format", "e164"), "max_calls": t.get("max_calls"),
            "procedure": t.get("procedure"),
            "qualify_frequency": t.get("qualify_frequency", 30),
            "setup_timeout": t.get("setup_timeout", 4), "digest": None}])
        key = {"trunk": t["name"]}
        add("trunk_addresses", _values(key, t.get("addresses", []), "address"))
        add("trunk_codecs", _values(key, t.get("codecs", ["alaw", "ulaw"]), "codec"))
        add("trunk_dids", _values(key, t.get("dids", []), "did_range"))
    for i, g in enumerate(documents.get("trunk_groups", [])):
        add("trunk_groups", [{"position": i, "name": g["name"], "digest": None}])
        add("trunk_group_members", _values({"trunk_group": g["name"]},
                                           g["trunks"], "trunk"))
    for i, f in enumerate(documents.get("time_frames", [])):
        add("time_frames", [{"position": i, "name": f["name"],
                             "description": f.get("description"), "digest": None}])
        for r, rule in enumerate(f["weekly"]):
            add("time_frame_rules", [{
                "time_frame": f["name"], "position": r,
                "start_time": rule.get("start", "00:00"), "end_time": rule.get("end", "23:59"),
                "digest": None}])
            add("time_frame_rule_days", _values({"time_frame": f["name"], "rule": r},
                                                rule["days"], "day"))
        add("time_frame_holidays", [{
            "time_frame": f["name"], "position": h, "date": day["date"],
            "until": day.get("until"), "description": day.get("description"), "digest": None}
            for h, day in enumerate(f.get("holidays", []))])
    for i, c in enumerate(documents.get("call_groups", [])):
        add("call_groups", [{
            "position": i, "name": c["name"], "description": c.get("description"),
            "strategy": c.get("strategy", "ring_all"),
            "member_timeout": c.get("member_timeout", 15), "timeout": c.get("timeout", 60),
            "digest": None}])
        add("call_group_members", _values({"call_group": c["name"]},
                                          c["members"], "extension"))
    for i, v in enumerate(documents.get("ivrs", [])):
        add("ivrs", [{
            "position": i, "name": v["name"], "description": v.get("description"),
            "prompt": v["prompt"], "timeout": v.get("timeout", 5), "repeat": v.get("repeat", 2),
            "on_timeout": _target(v.get("on_timeout")),
            "on_invalid": _target(v.get("on_invalid")), "digest": None}])
        add("ivr_options", [{
            "ivr": v["name"], "position": o, "user_extension": option.get("user"),
            "call_group": option.get("call_group"), "procedure": option.get("procedure"),
            "voicemail": option.get("voicemail"), "digit": option["digit"], "digest": None}
            for o, option in enumerate(v["options"])])
    for i, s in enumerate(documents.get("sounds", [])):
        add("sounds", [{"position": i, "name": s["name"], "description": s.get("description"),
                        "kind": s.get("kind", "prompt"), "files": _text(s["files"]),
                        "digest": None}])
    for group, acl in documents.get("group_acl", {}).items():
        for rule in ("allow", "deny"):
            add("group_call_classes", _values({"group_name": group, "rule": rule},
                                              acl.get(rule, []), "call_class"))
    general = documents.get("dialplan_general", {})
    add("call_class_settings", [{
        "position": i, "call_class": c["call_class"], "trunk_group": c.get("trunk_group"),
        "max_calls": c.get("max_calls"), "digest": None}
        for i, c in enumerate(general.get("classes", []))])
    for procedure, numbers in documents.get("procedure_numbers", {}).items():
        add("procedure_numbers", [{
            "procedure": procedure, "position": i, "number": n["number"],
            "applications": _text(n["applications"]), "digest": None}
            for i, n in enumerate(numbers)])
    for table, new in rows.items():  # parents were added before their children
        _insert(connection, table, new)
    codes = {**_FEATURE_CODES, **documents.get("dialplan_feature_codes", {})}
    settings = {f"feature_code_{name}": codes[name] for name in _FEATURE_CODES}
    for name in ("national_prefix", "international_prefix", "outside_line_prefix",
                 "trunk_group"):
        settings[f"general_{name}"] = general.get(name)
    for name in _GENERAL_JSON:
        settings[f"general_{name}"] = _text(general.get(name))
    dialplan = sa.table("dialplan_settings", *(sa.column(c) for c in settings))
    connection.execute(sa.update(dialplan).values(settings))


def upgrade() -> None:
    _create()
    if op.get_context().as_sql:  # printing the SQL (`--sql`): there are no rows to read
        op.drop_table("documents")
        return
    connection = op.get_bind()
    documents = {str(name): json.loads(body) for name, body in connection.execute(
        sa.text("SELECT name, body FROM documents"))}
    _move(connection, documents)
    op.drop_table("documents")


# --- downgrade: the documents again, from the rows -------------------------------------------

def _select(connection: sa.Connection, query: str) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(sa.text(query))]


def _by(rows: list[dict[str, Any]], key: str, column: str) -> dict[Any, list[Any]]:
    found: dict[Any, list[Any]] = {}
    for row in sorted(rows, key=lambda r: r["position"]):
        found.setdefault(row[key], []).append(row[column])
    return found


def _documents(connection: sa.Connection) -> dict[str, Any]:
    def table(name: str) -> list[dict[str, Any]]:
        return _select(connection, f"SELECT * FROM {name} ORDER BY position")

    def plain(row: dict[str, Any], *drop: str) -> dict[str, Any]:
        return {k: v for k, v in row.items()
                if k not in ("id", "position", "digest", *drop)}

    addresses = _by(table("trunk_addresses"), "trunk", "address")
    codecs = _by(table("trunk_codecs"), "trunk", "codec")
    dids = _by(table("trunk_dids"), "trunk", "did_range")
    members = _by(table("trunk_group_members"), "trunk_group", "trunk")
    rule_days: dict[tuple[str, int], list[str]] = {}
    for row in table("time_frame_rule_days"):
        rule_days.setdefault((row["time_frame"], row["rule"]), []).append(row["day"])
    rules: dict[str, list[dict[str, Any]]] = {}
    for row in table("time_frame_rules"):
        rules.setdefault(row["time_frame"], []).append({
            "days": rule_days.get((row["time_frame"], row["position"]), []),
            "start": row["start_time"], "end": row["end_time"]})
    holidays: dict[str, list[dict[str, Any]]] = {}
    for row in table("time_frame_holidays"):
        holidays.setdefault(row["time_frame"], []).append(plain(row, "time_frame"))
    call_members = _by(table("call_group_members"), "call_group", "extension")
    options: dict[str, list[dict[str, Any]]] = {}
    for row in table("ivr_options"):
        option = plain(row, "ivr", "user_extension")
        options.setdefault(row["ivr"], []).append({**option, "user": row["user_extension"]})
    acl: dict[str, dict[str, list[str]]] = {}
    for row in table("group_call_classes"):
        acl.setdefault(row["group_name"], {"allow": [], "deny": []})[row["rule"]].append(
            row["call_class"])
    numbers: dict[str, list[dict[str, Any]]] = {}
    for row in table("procedure_numbers"):
        numbers.setdefault(row["procedure"], []).append(
            {"number": row["number"], "applications": json.loads(row["applications"])})
    documents: dict[str, Any] = {
        "trunks": [{**plain(t), "addresses": addresses.get(t["name"], []),
                    "codecs": codecs.get(t["name"], []), "dids": dids.get(t["name"], [])}
                   for t in table("trunks")],
        "trunk_groups": [{"name": g["name"], "trunks": members.get(g["name"], [])}
                         for g in table("trunk_groups")],
        "sounds": [{**plain(s), "files": json.loads(s["files"])} for s in table("sounds")],
        "time_frames": [{**plain(f), "weekly": rules.get(f["name"], []),
                         "holidays": holidays.get(f["name"], [])}
                        for f in table("time_frames")],
        "call_groups": [{**plain(c), "members": call_members.get(c["name"], [])}
                        for c in table("call_groups")],
        "ivrs": [{**plain(v, "on_timeout", "on_invalid"),
                  "on_timeout": json.loads(v["on_timeout"]) if v["on_timeout"] else None,
                  "on_invalid": json.loads(v["on_invalid"]) if v["on_invalid"] else None,
                  "options": options.get(v["name"], [])} for v in table("ivrs")],
        "group_acl": acl,
        "procedure_numbers": numbers,
    }
    settings = _select(connection, "SELECT * FROM dialplan_settings")
    if settings:
        row = settings[0]
        general: dict[str, Any] = {
            name: row[f"general_{name}"] for name in
            ("national_prefix", "international_prefix", "outside_line_prefix", "trunk_group")
            if row[f"general_{name}"] is not None}
        general.update({name: json.loads(row[f"general_{name}"]) for name in _GENERAL_JSON
                        if row[f"general_{name}"] is not None})
        classes = [plain(c) for c in table("call_class_settings")]
        if classes:
            general["classes"] = [{k: v for k, v in c.items() if v is not None}
                                  for c in classes]
        documents["dialplan_general"] = general
        documents["dialplan_feature_codes"] = {
            name: row[f"feature_code_{name}"] for name in _FEATURE_CODES
            if row[f"feature_code_{name}"] != _FEATURE_CODES[name]}
    return documents


def downgrade() -> None:
    offline = op.get_context().as_sql  # printing the SQL: no rows to read
    connection = op.get_bind()
    documents = {} if offline else _documents(connection)
    op.create_table(
        "documents",
        sa.Column("name", _key(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        **_MYSQL,
    )
    if not offline and _select(connection, "SELECT id FROM system_settings"):  # a site
        _insert(connection, "documents", [
            {"name": name, "body": json.dumps(body, ensure_ascii=False)}
            for name, body in documents.items()])
    with op.batch_alter_table("dialplan_settings") as table:
        for name in ("national_prefix", "international_prefix", "outside_line_prefix",
                     *_GENERAL_JSON, "trunk_group"):
            table.drop_column(f"general_{name}")
        for name in _FEATURE_CODES:
            table.drop_column(f"feature_code_{name}")
    for name in ("procedure_numbers", "call_class_settings", "group_call_classes",
                 "sounds", "ivr_options", "ivrs", "call_group_members", "call_groups",
                 "time_frame_holidays", "time_frame_rule_days", "time_frame_rules",
                 "time_frames", "trunk_group_members", "trunk_groups", "trunk_dids",
                 "trunk_codecs", "trunk_addresses", "trunks"):
        op.drop_table(name)
