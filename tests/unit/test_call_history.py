"""The call history without Asterisk: settings (MSSQL refused, statistics backend, secrets
left out of exports), reading Asterisk's files from a checkpoint across rotation and a line
cut short, the spool's exactly-once intake, the assembly of legs into one call, and the
idempotent SQLite and CSV backends (a batch sent twice is written once)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from wildix_ast.calls.call_record import CDR_FILE, CEL_FILE
from wildix_ast.model.call_history import CallHistory, CallHistoryBackend
from wildix_ast.model.settings_file import dump_site
from wildix_ast.model.site import Site
from wildix_ast.services.call_history.assemble import Directory, assemble
from wildix_ast.services.call_history.backends import CsvSink, SqlSink
from wildix_ast.services.call_history.collector import Collector, CollectorConfig
from wildix_ast.services.call_history.query import Filters, delete_user_history, statistics
from wildix_ast.services.call_history.record import parse_line
from wildix_ast.services.call_history.source import read_new
from wildix_ast.services.call_history.spool import Spool

# --- settings ---------------------------------------------------------------------------------


def test_mssql_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="MSSQL is not supported"):
        CallHistory.model_validate({"backends": [{"name": "m", "kind": "mssql"}]})


def test_statistics_must_name_an_enabled_database_backend() -> None:
    with pytest.raises(ValidationError, match="cannot read the CSV backend"):
        CallHistory.model_validate({"statistics": "f",
                                    "backends": [{"name": "f", "kind": "csv"}]})
    with pytest.raises(ValidationError, match="not one of the backends"):
        CallHistory.model_validate({"statistics": "nope"})
    with pytest.raises(ValidationError, match="needs host, database, user"):
        CallHistoryBackend.model_validate({"name": "pg", "kind": "postgresql"})


def test_a_table_name_cannot_carry_sql() -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        CallHistoryBackend.model_validate({"name": "x", "kind": "sqlite",
                                           "table": "t; DROP TABLE users"})


def test_password_left_out_of_export_and_repr() -> None:
    site = Site.model_validate({"call_history": {"backends": [
        {"name": "local", "kind": "sqlite"},
        {"name": "pg", "kind": "postgresql", "host": "db.example", "database": "cdr",
         "user": "pbx", "password": "S3cret-Word"}]}})
    assert "S3cret-Word" not in dump_site(site, include_secrets=False)
    assert "S3cret-Word" in dump_site(site, include_secrets=True)
    assert "S3cret-Word" not in repr(site.call_history)


# --- reading the files ------------------------------------------------------------------------


def test_complete_lines_only_then_the_rest_once_finished(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b'{"linkedid":"1"}\n{"linkedid":"2"')
    first = read_new(path, None)
    assert [line for _, line in first.lines] == [b'{"linkedid":"1"}']
    with open(path, "ab") as stream:
        stream.write(b"}\n")
    second = read_new(path, first.checkpoint)
    assert [line for _, line in second.lines] == [b'{"linkedid":"2"}']
    assert read_new(path, second.checkpoint).lines == []


def test_rotation_reads_the_old_files_rest_first(tmp_path: Path) -> None:
    path = tmp_path / CDR_FILE
    path.write_bytes(b'{"linkedid":"1"}\n')
    first = read_new(path, None)
    with open(path, "ab") as stream:
        stream.write(b'{"linkedid":"2"}\n')
    path.rename(tmp_path / f"{CDR_FILE}.1")
    path.write_bytes(b'{"linkedid":"3"}\n')
    second = read_new(path, first.checkpoint)
    assert [line for _, line in second.lines] == [b'{"linkedid":"2"}']
    third = read_new(path, second.checkpoint)
    assert [line for _, line in third.lines] == [b'{"linkedid":"3"}']


def test_truncation_is_said_and_read_again(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b'{"linkedid":"1"}\n{"linkedid":"2"}\n')
    first = read_new(path, None)
    path.write_bytes(b'{"linkedid":"9"}\n')
    again = read_new(path, first.checkpoint)
    assert again.notes and [line for _, line in again.lines] == [b'{"linkedid":"9"}']


def test_a_bare_backslash_from_asterisks_json_is_read() -> None:
    parsed = parse_line(b'{"linkedid":"1.2","clid":"\\"A\\\\B\\" <1>","x":"a\\y"}')
    assert parsed is not None and parsed["x"] == "a\\y"
    assert parse_line(b"not json") is None


# --- collecting: spool, assembly, backends ----------------------------------------------------


def leg(linkedid: str, uniqueid: str, sequence: int, channel: str, dst_channel: str,
        disposition: str, start: float, answer: float, end: float, dst: str = "102",
        **extra: str) -> dict[str, Any]:
    return {"linkedid": linkedid, "uniqueid": uniqueid, "sequence": sequence,
            "channel": channel, "dstchannel": dst_channel, "src": "101", "dst": dst,
            "disposition": disposition, "start": start, "answer": answer, "end": end,
            "lastapp": "Dial", "dcontext": "users", **extra}


def directory() -> Directory:
    site = Site.model_validate({"system": {"language_region": {"country_code": "33"}},
                                "users": [{"name": "Ann", "extension": "101"},
                                          {"name": "Bob", "extension": "102"},
                                          {"name": "Cy", "extension": "100"}]})
    return Directory.of(site)


def test_a_forwarded_call_is_one_answered_record_with_both_legs() -> None:
    legs = [leg("9.1", "9.1", 1, "PJSIP/101-00000001", "PJSIP/102-00000002", "BUSY",
                100.0, 0, 101.0),
            leg("9.1", "9.1", 3, "PJSIP/101-00000001", "PJSIP/100-00000003", "ANSWERED",
                101.0, 102.5, 110.0)]
    record = assemble("9.1", legs, directory())
    assert (record.disposition, record.direction) == ("answered", "internal")
    assert (record.caller_user, record.caller_name, record.callee_user) == ("101", "Ann", "100")
    assert record.duration == 10.0 and record.billsec == 7.5
    assert len(json.loads(record.legs)) == 2
    assert record.handled_by == ""  # 'users' is no context of the PBX's


def test_handled_by_names_the_procedures_call_groups_and_ivrs() -> None:
    from wildix_ast.services.call_history.assemble import handled_by

    legs = [{"dcontext": c} for c in ("wildix-pn-main-0", "wildix-ivr-accueil",
                                      "wildix-cg-standard", "wildix-route", "proc-main")]
    assert handled_by(legs) == "procedure:main,ivr:accueil,call_group:standard"


def test_an_outgoing_international_call_of_the_default_group_is_refused_by_class() -> None:
    legs = [leg("5.1", "5.1", 1, "PJSIP/101-00000001", "", "NO ANSWER", 100.0, 0, 100.1,
                dst="0044201234567")]
    record = assemble("5.1", legs, directory())
    assert (record.disposition, record.direction, record.call_class) == \
        ("refused_class", "outgoing", "international")
    assert record.callee_number == "+44201234567"


def cdr_line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def test_collector_sigkill_between_reads_doubles_nothing(tmp_path: Path) -> None:
    """Two collectors in turn on the same files and spool (the second after the first
    'died' without closing), each call once in SQLite and CSV, a batch re-sent ignored."""
    logs = tmp_path / "log"
    logs.mkdir()
    sqlite_backend = CallHistoryBackend(name="local", kind="sqlite",  # type: ignore[arg-type]
                                        path=str(tmp_path / "h.sqlite3"))
    csv_backend = CallHistoryBackend(name="files", kind="csv",  # type: ignore[arg-type]
                                     folder=str(tmp_path / "csv"))
    config = CollectorConfig(logs, tmp_path / "spool.sqlite3", [sqlite_backend, csv_backend],
                             directory(), grace=0.0)
    with open(logs / CDR_FILE, "ab") as stream:
        for n in range(5):
            stream.write(cdr_line(leg(f"{n}.0", f"{n}.0", n, "PJSIP/101-0000000a",
                                      "PJSIP/102-0000000b", "ANSWERED", 1e9 + n,
                                      1e9 + n + 1, 1e9 + n + 3)))
    with open(logs / CEL_FILE, "ab") as stream:
        for n in range(3):
            stream.write(cdr_line({"eventtype": "LINKEDID_END", "linkedid": f"{n}.0"}))
    first = Collector(config)
    assert first.step(now=1e9 + 10) == 3
    for backend in config.backends:
        sink = SqlSink(backend) if backend.kind == "sqlite" else CsvSink(backend)
        first.deliver_once(backend, sink, first.spool)
        batch = first.spool.records_after(0, 100)
        sink.write(batch)  # the same batch again: a crash before the cursor moved
    with open(logs / CEL_FILE, "ab") as stream:
        for n in range(3, 5):
            stream.write(cdr_line({"eventtype": "LINKEDID_END", "linkedid": f"{n}.0"}))
    second = Collector(config)  # the first never closed its spool: as after SIGKILL
    assert second.step(now=1e9 + 20) == 2
    for backend in config.backends:
        sink = SqlSink(backend) if backend.kind == "sqlite" else CsvSink(backend)
        second.deliver_once(backend, sink, second.spool)
    rows = sqlite3.connect(tmp_path / "h.sqlite3").execute(
        "SELECT call_id FROM call_history").fetchall()
    assert sorted(r[0] for r in rows) == [f"{n}.0" for n in range(5)]
    csv_rows = [line for path in (tmp_path / "csv").glob("*.csv")
                for line in path.read_text().splitlines()[1:]]
    assert len(csv_rows) == 5
    assert statistics(sqlite_backend, "user", Filters())[0] == \
        {"key": "101", "calls": 5, "answered": 5, "minutes": 0.17}
    assert delete_user_history(sqlite_backend, "102") == 5
    assert delete_user_history(csv_backend, "102") == 5


def test_a_csv_row_cut_short_by_a_crash_is_replaced(tmp_path: Path) -> None:
    backend = CallHistoryBackend(name="files", kind="csv",  # type: ignore[arg-type]
                                 folder=str(tmp_path), rotation="none")  # type: ignore[arg-type]
    spool = Spool(tmp_path / "spool.sqlite3")
    record = assemble("1.0", [leg("1.0", "1.0", 1, "PJSIP/101-00000001",
                                  "PJSIP/102-00000002", "ANSWERED", 1e9, 1e9 + 1, 1e9 + 2)],
                      directory())
    spool.finish("1.0", record, 1e9)
    sink = CsvSink(backend)
    sink.write(spool.records_after(0, 10))
    path = sink.file_for(record)
    with open(path, "ab") as stream:
        stream.write(b'2,"half a ro')  # the collector died mid-write of record 2
    sink.write(spool.records_after(0, 10))
    text = path.read_text()
    assert text.count("\n") == 2 and "half a ro" not in text
    assert os.stat(path).st_mode & 0o777 == 0o640


# --- the toll-fraud brake ---------------------------------------------------------------------


def test_the_users_own_limit_wins_over_its_groups_and_the_sites() -> None:
    from wildix_ast.model.call_history import TollLimit
    from wildix_ast.services.call_history.brake import effective_limit

    limits = [TollLimit.model_validate(d) for d in (
        {"call_class": "international", "calls": 10},
        {"call_class": "international", "scope": "group", "name": "sales", "calls": 5},
        {"call_class": "international", "scope": "user", "name": "101", "minutes": 3})]
    assert effective_limit(limits, "101", "sales", "international") == limits[2]
    assert effective_limit(limits, "102", "sales", "international") == limits[1]
    assert effective_limit(limits, "103", "default", "international") == limits[0]
    assert effective_limit(limits, "103", "default", "national") is None
    with pytest.raises(ValidationError, match="never braked"):
        TollLimit.model_validate({"call_class": "emergency", "calls": 1})


def test_over_the_limit_sets_a_flag_until_the_window_passes_and_clear_lifts_it(
        tmp_path: Path) -> None:
    from wildix_ast.model.call_history import TollLimit
    from wildix_ast.services.call_history.brake import BrakeKeeper, clear

    spool = Spool(tmp_path / "spool.sqlite3")
    limit = TollLimit.model_validate({"call_class": "international", "minutes": 2,
                                      "window_minutes": 10})
    keeper = BrakeKeeper(tmp_path / "brake", [limit], {"101": "default"})
    legs = [leg("1.0", "1.0", 1, "PJSIP/101-00000001", "PJSIP/trunk-op-00000002", "ANSWERED",
                1000.0, 1000.0, 1090.0, dst="0044201234567")]
    spool.finish("1.0", assemble("1.0", legs, directory()), 1090.0)
    assert keeper.check(spool, [("101", "international")], now=1100.0) == []  # 1.5 min
    legs = [leg("2.0", "2.0", 1, "PJSIP/101-00000001", "PJSIP/trunk-op-00000002", "ANSWERED",
                1100.0, 1100.0, 1140.0, dst="0044201234567")]
    spool.finish("2.0", assemble("2.0", legs, directory()), 1140.0)
    (brake,) = keeper.check(spool, [("101", "international")], now=1150.0)
    flag = tmp_path / "brake" / "101-international"
    assert flag.stat().st_mtime == brake.until == 1150.0 + 600
    assert clear(tmp_path / "brake", spool, "101", "international", now=1200.0) == \
        ["international"]
    assert not flag.exists()
    # only calls after the clear count again
    assert keeper.check(spool, [("101", "international")], now=1210.0) == []


def test_a_new_brake_mails_its_alert_once_through_the_mail_queue(tmp_path: Path) -> None:
    """The brake's alert goes to `call_history.alert_email` through the PBX's one mail
    queue: one mail per brake, however often the collector finds the user over the limit."""
    from wildix_ast.mail.queue import MailQueue
    from wildix_ast.model.call_history import TollLimit
    from wildix_ast.services.call_history.brake import BrakeKeeper

    spool = Spool(tmp_path / "spool.sqlite3")
    limit = TollLimit.model_validate({"call_class": "international", "calls": 1,
                                      "window_minutes": 10})
    mail = tmp_path / "mail"
    keeper = BrakeKeeper(tmp_path / "brake", [limit], {"101": "default"},
                         alert_to="noc@example.com", mail_root=mail)
    legs = [leg("1.0", "1.0", 1, "PJSIP/101-00000001", "PJSIP/trunk-op-00000002", "ANSWERED",
                1000.0, 1000.0, 1090.0, dst="0044201234567")]
    spool.finish("1.0", assemble("1.0", legs, directory()), 1090.0)
    assert len(keeper.check(spool, [("101", "international")], now=1100.0)) == 1
    assert len(keeper.check(spool, [("101", "international")], now=1101.0)) == 1  # still over
    queue = MailQueue(mail)
    (ident,) = queue.due(float("inf"))
    queued = queue.load(ident)
    assert (queued.to, queued.kind) == ("noc@example.com", "fraud_alert")
    assert "101" in queued.subject and "international" in queued.subject
    assert "wildix-ast cdr brake clear 101" in queued.body
    # no address: logged only, nothing queued
    quiet = BrakeKeeper(tmp_path / "brake2", [limit], {"101": "default"},
                        mail_root=tmp_path / "mail2")
    assert len(quiet.check(spool, [("101", "international")], now=1100.0)) == 1
    assert not (tmp_path / "mail2").exists() or not MailQueue(tmp_path / "mail2").due(1e12)


def test_the_dialplan_checks_the_brake_only_for_limited_classes() -> None:
    from wildix_ast.asterisk.outgoing import _route

    site = Site.model_validate({"call_history": {"limits": [
        {"call_class": "international", "calls": 3}]}})
    steps = {ext.name: " ".join(str(s) for s in ext.steps) for ext in _route(site)}
    assert "wildix-brake" in steps["international"]
    assert "wildix-brake" not in steps["national"]


# --- the verbs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_user_delete_with_history_and_the_verbs_on_bad_input(tmp_path: Path) -> None:
    from support.cli_run import EXAMPLE, assert_no_traceback, run

    from wildix_ast.model.settings_file import load_site
    from wildix_ast.store import open_store

    site = load_site(EXAMPLE)
    history = tmp_path / "h.sqlite3"
    site = Site.model_validate({**site.model_dump(), "call_history": {"backends": [
        {"name": "local", "kind": "sqlite", "path": str(history)}]}})
    with open_store(str(tmp_path / "store.sqlite3")) as store:
        store.import_site(site)
    backend = site.call_history.backends[0]
    sink = SqlSink(backend)
    for n, (caller, callee) in enumerate((("101", "150"), ("150", "100"), ("101", "100"))):
        record = assemble(f"{n}.0", [leg(f"{n}.0", f"{n}.0", 1, f"PJSIP/{caller}-00000001",
                                         f"PJSIP/{callee}-00000002", "ANSWERED",
                                         1e9, 1e9 + 1, 1e9 + 5)], Directory.of(site))
        sink.write([(n + 1, record)])
    sink.close()
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    bad = run("cdr", "list", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "is not a date" in bad.stderr
    assert_no_traceback(bad)
    listed = run("cdr", "list", "--user", "150", "--json", env=env)
    assert len(json.loads(listed.stdout)["calls"]) == 2
    done = run("user", "delete", "150", "--with-history", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["history_removed"] == {"local": 2}
    left = sqlite3.connect(history).execute("SELECT call_id FROM call_history").fetchall()
    assert left == [("2.0",)]
    with open_store(str(tmp_path / "store.sqlite3")) as store:
        assert "150" not in {u.extension for u in store.export_site().users}
    again = run("user", "delete", "150", env=env)
    assert again.returncode == 2 and "no user has extension 150" in again.stderr
    # a user still named by call groups stays, and the message says where
    held = run("user", "delete", "102", env=env)
    assert held.returncode == 2 and "call_groups.0.members" in held.stderr
    assert_no_traceback(held)


def test_the_spool_forgets_only_what_every_backend_has(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    for n in range(4):
        record = assemble(f"{n}.0", [leg(f"{n}.0", f"{n}.0", 1, "PJSIP/101-00000001",
                                         "PJSIP/102-00000002", "ANSWERED", 1e9, 1e9 + 1,
                                         1e9 + 2)], directory())
        spool.finish(f"{n}.0", record, 1000.0 + n)
    spool.delivered("a", 4, 2000.0)
    spool.delivered("b", 2, 2000.0)
    assert spool.prune(["a", "b"], older_than=5000.0) == 2
    assert [r[0] for r in spool.records_after(0, 10)] == [3, 4]
    assert spool.prune(["a", "b"], older_than=1000.0) == 0


def test_a_caller_name_cannot_become_a_spreadsheet_formula() -> None:
    from wildix_ast.services.call_history.backends import csv_safe

    assert csv_safe('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert csv_safe("+33140000000") == "+33140000000"
    assert csv_safe("-cmd|' /C calc'!A0") == "'-cmd|' /C calc'!A0"
    assert csv_safe(12.5) == 12.5


def test_an_end_read_before_its_legs_waits_for_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.take("cel", None, ends=["7.0"], now=100.0)
    assert spool.due(ended_before=101.0, orphaned_before=0.0) == []
    spool.take("cdr", None, legs=[leg("7.0", "7.0", 1, "PJSIP/101-00000001", "", "ANSWERED",
                                      99.0, 99.0, 100.0)], now=101.0)
    assert spool.due(ended_before=101.0, orphaned_before=0.0) == ["7.0"]
    spool.take("cel", None, ends=["8.0"], now=100.0)  # never gets a leg: dropped later
    assert "8.0" in spool.due(ended_before=131.0, orphaned_before=0.0)
