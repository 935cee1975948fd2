"""Fax2Mail's service step (wildix_ast.services.fax.inbound) on real files: a job record
strictly read (a caller cannot add a line or a field), a real TIFF converted by tiff2pdf,
each job's mails queued once however often it is collected, a failed reception reported,
and the dialplan that writes the records (FILTER before any file or command)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fax_pages import fax_tiff, make_pdf

from wildix_ast.asterisk.dialplan_builder import context_lines
from wildix_ast.asterisk.fax_contexts import RECORD_FIELDS, fax_done_context
from wildix_ast.mail.queue import MailQueue, QueuedMail
from wildix_ast.services.fax.inbound import BadJob, collect, parse_record

GOOD = ("job=1796661954.1\nuser=190\ndid=+33140000190\nfrom=+33155501234\nstatus=SUCCESS\n"
        "statusstr=OK\nerror=\npages=2\nduration=41\nremote=ACME FAX\nrate=14400\n"
        "ecm=yes\nresolution=8031x7700\n")


def _spool(tmp_path: Path) -> Path:
    for folder in ("tmp", "new"):
        (tmp_path / "spool" / folder).mkdir(parents=True)
    return tmp_path / "spool"


def _queued(root: Path) -> list[QueuedMail]:
    queue = MailQueue(root)
    return [queue.load(e.id, "new") for e in queue.entries()]


def test_a_record_is_read_strictly() -> None:
    job = parse_record(GOOD)
    assert (job.caller, job.pages, job.duration, job.received) == ("+33155501234", 2, 41,
                                                                    True)
    for bad in (GOOD.replace("from=+33155501234", "from=+331;rm -rf /"),
                GOOD + "to=attacker@example.com\n",
                GOOD + "user=101\n",
                GOOD.replace("remote=ACME FAX", "remote=ACME\x00"),
                "status=SUCCESS\n"):
        with pytest.raises(BadJob):
            parse_record(bad)


def test_the_hang_up_handler_filters_every_value_it_writes() -> None:
    text = "\n".join(context_lines(fax_done_context()))
    writes = [line for line in text.splitlines() if "FILE(" in line and "=" in line]
    assert [w.split(")=", 1)[1].split("=", 1)[0] for w in writes[1:]] == list(RECORD_FIELDS)
    for line in writes[1:]:
        value = line.split(")=", 1)[1]
        # a FAXOPT value only ever reaches the file through FILTER
        assert "FAXOPT(" not in value or value.count("FILTER(") == value.count("FAXOPT(")
    (move,) = [line for line in text.splitlines() if "System(" in line]
    assert "CALLERID" not in move and "FAX_FROM" not in move


def test_each_job_is_mailed_once_with_its_pdf(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    job = "1796661954.1"
    fax_tiff(make_pdf(tmp_path / "two.pdf", 2), spool / "new" / f"{job}.tif")
    (spool / "new" / f"{job}.job").write_text(GOOD)
    queue = tmp_path / "queue"
    emails = {"190": "compta@acme.fr"}
    first = collect(spool, emails.get, copy_to=["copies@acme.fr"], queue_root=queue)
    assert [(c.job, c.queued) for c in first] == [(job, 2)]
    # a crash before the job left new/: collected again, nothing queued twice
    for name in (f"{job}.tif", f"{job}.job"):
        (spool / "done" / name).rename(spool / "new" / name)
    again = collect(spool, emails.get, copy_to=["copies@acme.fr"], queue_root=queue)
    assert [(c.job, c.queued) for c in again] == [(job, 0)]
    mails = _queued(queue)
    assert sorted(m.to for m in mails) == ["compta@acme.fr", "copies@acme.fr"]
    mail = mails[0]
    assert "+33155501234" in mail.subject and "2 pages" in mail.subject
    assert "Pages: 2" in mail.body and "Duration: 41 s" in mail.body
    (pdf,) = mail.attachments
    assert pdf.content_type == "application/pdf" and pdf.data.startswith(b"%PDF-")
    assert pdf.data.count(b"/Type /Page\n") + pdf.data.count(b"/Type /Page ") >= 2


def test_a_failed_reception_gives_a_report_and_a_bad_record_none(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    failed = GOOD.replace("job=1796661954.1", "job=1796661999.7").replace(
        "status=SUCCESS", "status=FAILED").replace("statusstr=OK", "statusstr=NO FAX")
    (spool / "new" / "1796661999.7.job").write_text(failed)
    (spool / "new" / "1796662000.1.job").write_text(GOOD)  # names another job: refused
    queue = tmp_path / "queue"
    done = collect(spool, {"190": "compta@acme.fr"}.get, queue_root=queue)
    assert [(c.job, c.status, c.queued) for c in done] == [("1796661999.7", "FAILED", 1)]
    (mail,) = _queued(queue)
    assert "not received" in mail.subject and "NO FAX" in mail.body
    assert mail.attachments == ()
    assert (spool / "bad" / "1796662000.1.job").exists()
