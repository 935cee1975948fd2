"""The fax service as a production office runs it (wildix_ast.services.fax.service,
.documents): the serving loop collects a job promptly and outlives a bad one; finished
jobs, old documents and finished mails are pruned, never one not yet final; each received
fax is one call record with its status, pages, station and a document that exists; a
user's GDPR deletion takes their fax documents."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import String, Text, create_engine
from support.fax_pages import fax_tiff, make_pdf

from wildix_ast.asterisk.dialplan_builder import context_lines
from wildix_ast.asterisk.fax_contexts import fax_done_context
from wildix_ast.mail.queue import MailQueue, enqueue_mail
from wildix_ast.model.call_history import CallHistoryBackend
from wildix_ast.model.site import Site
from wildix_ast.services.call_history.assemble import Directory, assemble
from wildix_ast.services.call_history.backends import (
    CSV_COLUMNS,
    CsvSink,
    SqlSink,
    record_table,
)
from wildix_ast.services.call_history.query import Filters, list_records
from wildix_ast.services.call_history.spool import Spool
from wildix_ast.services.fax.documents import (
    DAY,
    document_path,
    forget_user_documents,
    prune_documents,
    prune_spool,
    store_document,
)
from wildix_ast.services.fax.inbound import MAX_TRIES
from wildix_ast.services.fax.service import FaxService, FaxSettings

GOOD = ("job={job}\nuser=190\ndid=+33140000190\nfrom=+33155501234\nstatus=SUCCESS\n"
        "statusstr=OK\nerror=\npages={pages}\nduration=41\nremote=ACME FAX\nrate=14400\n"
        "ecm=yes\nresolution=8031x7700\n")


def _spool(tmp_path: Path) -> Path:
    for folder in ("tmp", "new"):
        (tmp_path / "spool" / folder).mkdir(parents=True)
    return tmp_path / "spool"


def _drop(spool: Path, job: str, pages: int = 2, user: str = "190",
          tiff: Path | None = None) -> None:
    if tiff is not None:
        (spool / "new" / f"{job}.tif").write_bytes(tiff.read_bytes())
    (spool / "new" / f"{job}.job").write_text(
        GOOD.format(job=job, pages=pages).replace("user=190", f"user={user}"))


def test_the_loop_collects_promptly_and_outlives_a_bad_job(tmp_path: Path) -> None:
    spool, documents, queue = _spool(tmp_path), tmp_path / "documents", tmp_path / "queue"
    tiff = fax_tiff(make_pdf(tmp_path / "two.pdf", 2), tmp_path / "two.tif")

    def email_of(extension: str) -> str | None:
        if extension == "666":
            raise RuntimeError("the store broke for this user")
        return "compta@acme.fr"

    service = FaxService(spool, queue, documents, lambda: FaxSettings(email_of))
    stop = threading.Event()
    collected: list[str] = []
    thread = threading.Thread(target=service.serve, args=(stop, 0.05,
                                                          lambda found: collected.extend(
                                                              c.job for c in found)))
    thread.start()
    try:
        (spool / "new" / "1796660000.1.job").write_text("user=190\n;rm -rf /\n")  # unreadable
        _drop(spool, "1796660001.1", user="666")  # its collection fails every time
        time.sleep(0.2)
        started = time.monotonic()
        _drop(spool, "1796660002.1", tiff=tiff)
        while "1796660002.1" not in collected and time.monotonic() - started < 30:
            time.sleep(0.02)
        picked_up = time.monotonic() - started
        deadline = time.monotonic() + 10
        while (spool / "new" / "1796660001.1.job").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    print(f"a 2-page job collected {picked_up:.2f} s after it was dropped (poll 0.05 s)")
    assert "1796660002.1" in collected
    assert picked_up < 5.0, f"a job waited {picked_up:.2f} s"  # tiff2pdf included
    assert (spool / "bad" / "1796660000.1.job").exists()
    # tried MAX_TRIES times, then set aside: never a loop, never a crash
    assert (spool / "bad" / "1796660001.1.job").exists() and MAX_TRIES == 5
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["1796660002.1.job",
                                                                  "1796660002.1.tif"]
    pdf = document_path(documents, "190/1796660002.1.pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert pdf.stat().st_mode & 0o777 == 0o600
    assert pdf.parent.stat().st_mode & 0o777 == 0o700
    assert documents.stat().st_mode & 0o777 == 0o700


def test_a_document_reference_names_nothing_outside_the_folder(tmp_path: Path) -> None:
    for reference in ("../etc/passwd", "190/../../x.pdf", "/etc/passwd", "190/1.1.tif",
                      "abc/1.1.pdf", "190/1;rm.pdf"):
        with pytest.raises(ValueError):
            document_path(tmp_path, reference)
    with pytest.raises(ValueError):
        store_document(tmp_path, "../../tmp", "1.1", b"%PDF-")
    with pytest.raises(ValueError):
        forget_user_documents(tmp_path, "..")


def _age(path: Path, days: float) -> None:
    moment = time.time() - days * DAY
    os.utime(path, (moment, moment))


def test_retention_prunes_only_what_is_final_and_old(tmp_path: Path) -> None:
    spool, documents = _spool(tmp_path), tmp_path / "documents"
    for folder in ("done", "bad"):
        (spool / folder).mkdir()
    old_done, young_done = spool / "done" / "1.1.job", spool / "done" / "2.1.job"
    old_bad, old_new = spool / "bad" / "3.1.job", spool / "new" / "4.1.job"
    old_tmp = spool / "tmp" / "5.1.tif"
    for path in (old_done, young_done, old_bad, old_new, old_tmp):
        path.write_text("x")
    for path in (old_done, old_bad, old_new, old_tmp):
        _age(path, 40)
    _age(young_done, 10)
    old_doc = document_path(documents, store_document(documents, "190", "1.1", b"%PDF-1"))
    young_doc = document_path(documents, store_document(documents, "191", "2.1", b"%PDF-2"))
    _age(old_doc, 400)
    _age(young_doc, 100)

    service = FaxService(spool, tmp_path / "queue", documents,
                         lambda: FaxSettings(lambda _: None, keep_days=30,
                                             retention_days=365))
    assert service.prune(service.settings(), time.time()) == (2, 1)
    assert not old_done.exists() and not old_bad.exists() and not old_doc.exists()
    assert young_done.exists() and young_doc.exists()
    assert old_new.exists() and old_tmp.exists()  # not final: never pruned
    assert not old_doc.parent.exists()  # the emptied user folder goes too
    assert prune_spool(spool, time.time()) == 1 and prune_documents(documents, 0) == 0


def test_the_mail_queue_prunes_sent_and_failed_never_queued_or_sending(tmp_path: Path) -> None:
    from wildix_ast.services.mail.sender import Sender

    root = tmp_path / "queue"
    idents = [enqueue_mail("a@acme.fr", f"mail {n}", "body", kind="fax_in", key=f"k-{n}",
                           root=root) for n in range(4)]
    queue = MailQueue(root)
    assert all(idents)
    sent, failed, sending, queued = (str(i) for i in idents)
    queue.arm(sent)
    queue.committing(sent)
    queue.sent(sent)
    queue.fail(failed, "550 no such user")
    queue.arm(sending)
    queue.committing(sending)
    assert queue.prune(time.time() - 3600) == 0  # finished just now: kept
    sender = Sender(queue, dict)
    sender.keep_days = lambda: 0
    assert sender.prune_when_due(time.time() + 1) == 2
    assert sender.prune_when_due(time.time() + 2) == 0  # once an hour, not every pass
    left = {e.id: e.status for e in queue.entries()}
    assert left == {sending: "sending", queued: "queued"}
    assert not (queue.folder("state") / f"{failed}.json").exists()


def _fax_legs(job: str, pages: str, status: str = "SUCCESS",
              remote: str = "ACME FAX") -> list[dict[str, object]]:
    return [{"linkedid": job, "uniqueid": job, "sequence": 1,
             "channel": "PJSIP/trunk-provider-00000001", "dstchannel": "",
             "src": "0155501234", "dst": "+33140000190", "disposition": "ANSWERED",
             "start": 1e9, "answer": 1e9 + 0.5, "end": 1e9 + 42.0, "lastapp": "ReceiveFAX",
             "dcontext": "wildix-did", "wms_fax": "received", "wms_fax_job": job,
             "wms_fax_user": "190", "wms_fax_status": status, "wms_fax_pages": pages,
             "wms_fax_remote": remote}]


def _directory() -> Directory:
    return Directory.of(Site.model_validate({
        "system": {"language_region": {"country_code": "33"}},
        "users": [{"name": "Fax compta", "extension": "190", "type": "fax",
                   "fax_did": "+33140000190", "email": "compta@acme.fr"}]}))


def test_a_received_fax_is_one_record_with_its_status_pages_station_and_document() -> None:
    record = assemble("1796661954.1", _fax_legs("1796661954.1", "3"), _directory())
    assert (record.fax, record.fax_status, record.fax_pages, record.fax_remote) == (
        "received", "SUCCESS", 3, "ACME FAX")
    assert record.fax_document == "190/1796661954.1.pdf"
    assert (record.direction, record.callee_user, record.callee_name) == (
        "incoming", "190", "Fax compta")
    failed = assemble("7.1", _fax_legs("7.1", "0", "FAILED"), _directory())
    assert (failed.fax_status, failed.fax_pages, failed.fax_document) == ("FAILED", 0, "")
    # a value the dialplan would never write (a job naming another folder) names nothing
    forged = _fax_legs("8.1", "2", remote="x\ny")
    forged[0]["wms_fax_job"] = "../../etc"
    odd = assemble("8.1", forged, _directory())
    assert (odd.fax_document, odd.fax_remote) == ("", "")
    plain = assemble("9.1", [{k: v for k, v in _fax_legs("9.1", "1")[0].items()
                              if not k.startswith("wms_fax")}], _directory())
    assert (plain.fax, plain.fax_pages, plain.fax_document) == ("", 0, "")


def test_the_hang_up_handler_marks_the_cdr_with_filtered_values() -> None:
    text = "\n".join(context_lines(fax_done_context()))
    marks = [line for line in text.splitlines() if "CDR(wms_fax" in line]
    assert len(marks) == 6
    for line in marks:
        value = line.split(")=", 1)[1]
        assert "FAXOPT(" not in value or value.count("FILTER(") == value.count("FAXOPT(")
    # the marks come before the move that hands the job to the fax service
    assert text.index("CDR(wms_fax)") < text.index("System(mv")


def test_an_older_table_gains_the_fax_columns_and_an_older_csv_is_set_aside(
        tmp_path: Path) -> None:
    database = tmp_path / "history.sqlite3"
    before = record_table("call_history")  # the table as the version before made it
    for column in [c for c in before.columns if c.name.startswith("fax")]:
        before._columns.remove(column)
    engine = create_engine(f"sqlite:///{database}")
    before.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(before.insert(), [{c.name: "old.1" if c.name == "call_id"
                                              else "" if isinstance(c.type, String | Text)
                                              else 1.0 for c in before.columns}])
    engine.dispose()
    spool = Spool(tmp_path / "spool.sqlite3")
    record = assemble("1796661954.1", _fax_legs("1796661954.1", "3"), _directory())
    spool.finish(record.call_id, record, 1e9)
    backend = CallHistoryBackend(name="local", kind="sqlite",
                                 path=str(database))
    # `cdr list` reads such a table before the collector has added the columns
    (old_row,) = list_records(backend, Filters())
    assert (old_row["call_id"], old_row["fax"], old_row["fax_pages"]) == ("old.1", "", 0)
    sink = SqlSink(backend)
    sink.write(spool.records_after(0, 10))
    sink.close()
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT call_id, fax_pages, fax_document FROM call_history "
                          "ORDER BY call_id").fetchall()
    assert rows == [("1796661954.1", 3, "190/1796661954.1.pdf"), ("old.1", 0, "")]

    folder = tmp_path / "csv"
    folder.mkdir()
    csv_backend = CallHistoryBackend(name="files", kind="csv",
                                     folder=str(folder), rotation="none")
    old = folder / "call_history.csv"
    old.write_text("record_id,call_id,start\n1,old.1,1.0\n")
    CsvSink(csv_backend).write(spool.records_after(0, 10))
    assert (folder / "call_history.v1.csv").read_text().endswith("1,old.1,1.0\n")
    header, row = old.read_text().splitlines()
    assert header.split(",") == list(CSV_COLUMNS) and "190/1796661954.1.pdf" in row
    spool.close()


def test_gdpr_deletion_takes_the_users_fax_documents(tmp_path: Path) -> None:
    documents = tmp_path / "documents"
    store_document(documents, "190", "1.1", b"%PDF-1")
    store_document(documents, "190", "2.1", b"%PDF-2")
    kept = document_path(documents, store_document(documents, "191", "3.1", b"%PDF-3"))
    assert forget_user_documents(documents, "190") == 2
    assert not (documents / "190").exists() and kept.exists()
    assert forget_user_documents(documents, "190") == 0
    assert json.dumps(sorted(p.name for p in documents.iterdir())) == '["191"]'


def test_the_collector_takes_new_settings_without_a_restart(tmp_path: Path) -> None:
    """Issue 19's leftover: a backend added by an import starts receiving (from the first
    record: its cursor is new), one removed stops, a changed one restarts on its cursor;
    the records' meaning follows the new site."""
    from wildix_ast.services.call_history.collector import Collector, CollectorConfig, Settings

    logs = tmp_path / "log"
    logs.mkdir()
    first = CallHistoryBackend(name="local", kind="sqlite", path=str(tmp_path / "a.sqlite3"))
    added = CallHistoryBackend(name="files", kind="csv", folder=str(tmp_path / "csv"))
    spool = Spool(tmp_path / "spool.sqlite3")
    record = assemble("1796661954.1", _fax_legs("1796661954.1", "3"), _directory())
    spool.finish(record.call_id, record, 1e9)
    spool.close()
    pending: list[Settings] = []
    config = CollectorConfig(logs, tmp_path / "spool.sqlite3", [first], Directory(),
                             poll=0.02, reload=lambda: pending.pop() if pending else None,
                             reload_every=0.05)
    collector = Collector(config)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop.is_set,))
    thread.start()

    def wait_for(check: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 15
        while not check() and time.monotonic() < deadline:
            time.sleep(0.02)
        return check()

    def rows(path: Path) -> int:
        if not path.exists():
            return 0
        with sqlite3.connect(path) as db:
            try:
                return int(db.execute("SELECT COUNT(*) FROM call_history").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    try:
        assert wait_for(lambda: rows(tmp_path / "a.sqlite3") == 1)
        pending.append(Settings([first, added], _directory(), None))
        assert wait_for(lambda: any((tmp_path / "csv").glob("*.csv")))
        assert wait_for(lambda: "files" in collector.delivering)
        moved = first.model_copy(update={"path": str(tmp_path / "b.sqlite3")})
        pending.append(Settings([moved, added], _directory(), None))
        assert wait_for(lambda: collector.delivering.get("local", (None,))[0] == moved)
        pending.append(Settings([added], _directory(), None))
        assert wait_for(lambda: "local" not in collector.delivering)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    # the changed backend kept its cursor: the record it had is not written to its new
    # place again (a moved database is the operator's to copy), nothing is doubled
    assert rows(tmp_path / "b.sqlite3") == 0 and rows(tmp_path / "a.sqlite3") == 1
    (written,) = (tmp_path / "csv").glob("*.csv")
    assert len(written.read_text().splitlines()) == 2
    assert config.directory.users  # the new site's meaning is in force


def test_a_link_dropped_in_new_is_never_followed(tmp_path: Path) -> None:
    """Whoever can write the spool (Asterisk) must not make the fax service read and mail a
    file only the service may read (another user's fax document)."""
    from wildix_ast.services.fax.inbound import collect

    spool, documents = _spool(tmp_path), tmp_path / "documents"
    secret = document_path(documents, store_document(documents, "191", "1.1", b"%PDF-secret"))
    (spool / "new" / "1796660003.1.tif").symlink_to(secret)
    _drop(spool, "1796660003.1")
    (spool / "new" / "1796660004.1.job").symlink_to(secret)
    found = collect(spool, lambda _: "compta@acme.fr", queue_root=tmp_path / "queue",
                    documents=documents)
    assert found == []
    queued = tmp_path / "queue" / "new"
    assert not queued.exists() or not list(queued.iterdir())
    assert sorted(p.name for p in (spool / "bad").iterdir()) == [
        "1796660003.1.job", "1796660003.1.tif", "1796660004.1.job"]
    assert secret.read_bytes() == b"%PDF-secret"


def test_backend_passwords_live_in_the_vault_and_migrate_there(tmp_path: Path) -> None:
    """Issue 19's leftover: a call history backend's password is in the vault, not in its
    row; `export --with-secrets` and the collector's settings get it back; a store made
    before migration 0018 has its passwords moved into the vault, and back on downgrade."""
    from alembic import command

    from wildix_ast.model.settings_file import dump_site
    from wildix_ast.store import database, open_store
    from wildix_ast.store.vault import cdr_password_key, with_backend_passwords, with_secrets

    site = Site.model_validate({"call_history": {"statistics": "pg", "backends": [
        {"name": "pg", "kind": "postgresql", "host": "db.example", "database": "cdr",
         "user": "pbx", "password": "S3cret-Word"}]}})
    db = tmp_path / "store.sqlite3"
    with open_store(str(db)) as store:
        store.import_site(site)
        with_secrets(site, store)
        exported = store.export_site()
        assert exported.call_history.backends[0].password is None
        back = with_backend_passwords(exported, store)
        assert back.call_history.backends[0].password == "S3cret-Word"
        assert "S3cret-Word" in dump_site(back, include_secrets=True)
        assert "S3cret-Word" not in dump_site(back, include_secrets=False)
    with sqlite3.connect(db) as raw:
        columns = [r[1] for r in raw.execute("PRAGMA table_info(call_history_backends)")]
        assert "password" not in columns
        assert "S3cret-Word" not in str(raw.execute(
            "SELECT * FROM call_history_backends").fetchall())

    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as connection:
            command.downgrade(database._alembic_config(connection), "0015")
        with sqlite3.connect(db) as raw:
            assert raw.execute("SELECT password FROM call_history_backends").fetchall() == [
                ("S3cret-Word",)]
            assert raw.execute("SELECT COUNT(*) FROM secrets WHERE key = ?",
                               (cdr_password_key("pg"),)).fetchone() == (0,)
            raw.execute("UPDATE call_history_backends SET password = 'Other-Word1'")
        with engine.begin() as connection:
            command.upgrade(database._alembic_config(connection), "head")
    finally:
        engine.dispose()
    with open_store(str(db)) as store:
        assert store.get_secrets([cdr_password_key("pg")]) == {
            cdr_password_key("pg"): "Other-Word1"}
