"""Mail2Fax's dialer checks every job again before its call (issue 20, docs/fax.md "The
accounts it runs as"): the job spool is written by `fax poll`, which reads untrusted mail
and runs ghostscript; whoever controls that user can forge job files. A forged job must not
dial a number the sender's ACL group may not call (nor a number that is not one), nor fax a
file other than a TIFF of the spool (the store, another user's fax), nor stop the other
jobs. The attacker here writes the spool directly, as the poller's user could."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from unit.test_mail2fax import SENT, FakeAsterisk, _queued_job, pdfs  # noqa: F401

from wildix_ast.model.site import Site
from wildix_ast.services.call_history.assemble import Directory, assemble
from wildix_ast.services.fax.dialer import Dialer, DialSettings
from wildix_ast.services.fax.jobs import JobSpool

SECRET = b"II*\x00 the store: every SIP password"


def _dialer(tmp_path: Path, spool: JobSpool, site: Site, line: FakeAsterisk,
            documents: Path | None = None) -> Dialer:
    return Dialer(spool, line, tmp_path / "out", site,
                  DialSettings(record_wait=0.1), (), tmp_path / "queue", documents=documents)


def _forge(spool: JobSpool, key: str, **changes: object) -> Path:
    """Rewrite the job file as the poller's user could (no API: the JSON itself)."""
    path = spool.root / f"{key}.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("number", ["+442071234567", "112", "0140000190|x|y", "0140000190,1",
                                    "3615", "", "0140000190 ", "+", "0" * 30])
def test_a_forged_number_is_never_dialled(tmp_path: Path, pdfs: dict[str, bytes],  # noqa: F811
                                          number: str) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    _forge(spool, key, number=number)
    line = FakeAsterisk(tmp_path / "out", [({"dialstatus": "", "cause": "16"}, SENT)])
    asyncio.run(_dialer(tmp_path, spool, site, line).send_due())
    job = spool.get(key)
    assert job is not None and job.state == "failed", job
    assert job.reason.startswith("not sent: "), job.reason
    assert line.calls == [] and line.astdb == {}
    assert list((tmp_path / "out" / "send").iterdir()) == []


@pytest.mark.parametrize(("changes", "why"), [
    ({"extension": "999"}, "999"),                   # no such user
    ({"extension": "101"}, "may not fax as user 101"),  # 102's mail borrowing 101's group
    ({"sender": "mallory@evil.example"}, "may not fax as"),
    ({"profile": "other"}, "profile 'other'"),
])
def test_a_forged_sender_or_profile_is_never_dialled(
        tmp_path: Path, pdfs: dict[str, bytes],  # noqa: F811
        changes: dict[str, str], why: str) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    _forge(spool, key, number="+442071234567" if "extension" in changes else "0140000190",
           **changes)
    line = FakeAsterisk(tmp_path / "out", [])
    asyncio.run(_dialer(tmp_path, spool, site, line).send_due())
    job = spool.get(key)
    assert job is not None and job.state == "failed" and why in job.reason, job
    assert line.calls == []


def test_the_pages_must_be_a_tiff_of_the_spool_never_a_link(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:  # noqa: F811
    secret = tmp_path / "store.sqlite3"
    secret.write_bytes(SECRET)
    cases = {"symbolic link": lambda tiff: tiff.symlink_to(secret),
             "hard link": lambda tiff: os.link(secret, tiff),
             "a PDF": lambda tiff: tiff.write_bytes(pdfs["good"]),
             "a folder": lambda tiff: tiff.mkdir(),
             "a fifo": lambda tiff: os.mkfifo(tiff)}
    for n, (case, plant) in enumerate(cases.items()):
        work = tmp_path / str(n)
        spool, site, key = _queued_job(work, pdfs)
        tiff = spool.tiff(key)
        tiff.unlink()
        plant(tiff)
        line = FakeAsterisk(work / "out", [({"dialstatus": "", "cause": "16"}, SENT)])
        asyncio.run(_dialer(work, spool, site, line).send_due())
        job = spool.get(key)
        assert job is not None and job.state == "failed", (case, job)
        assert job.reason.startswith("not sent: "), (case, job.reason)
        assert line.calls == [], case
        sent_files = list((work / "out" / "send").iterdir())
        assert sent_files == [], (case, sent_files)   # the secret was never copied


def test_a_tiff_with_other_pages_than_the_job_says_is_refused(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:  # noqa: F811
    spool, site, key = _queued_job(tmp_path, pdfs)
    _forge(spool, key, pages=1)
    line = FakeAsterisk(tmp_path / "out", [])
    asyncio.run(_dialer(tmp_path, spool, site, line).send_due())
    job = spool.get(key)
    assert job is not None and job.state == "failed" and "2 pages" in job.reason, job
    assert line.calls == []


def test_an_unreadable_forged_job_is_skipped_and_the_others_are_sent(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:  # noqa: F811
    spool, site, key = _queued_job(tmp_path, pdfs)
    junk = {"0" * 32: "not json", "1" * 32: json.dumps([1, 2]),
            "2" * 32: json.dumps({"key": "2" * 32, "profile": "invoices", "message_id": "x",
                                  "sender": "x", "state": "queued", "accepted_at": 0.0,
                                  "pages": "two"}),
            "3" * 32: json.dumps({"key": key, "profile": "invoices", "message_id": "x",
                                  "sender": "x", "state": "queued", "accepted_at": 0.0}),
            "4" * 32: json.dumps({"key": "4" * 32, "profile": "invoices", "message_id": "x",
                                  "sender": "x", "state": "hacked", "accepted_at": 0.0})}
    for name, text in junk.items():
        (spool.root / f"{name}.json").write_text(text)
    line = FakeAsterisk(tmp_path / "out", [({"dialstatus": "", "cause": "16"}, SENT)])
    touched = asyncio.run(_dialer(tmp_path, spool, site, line).send_due())
    assert [j.key for j in touched] == [key]
    job = spool.get(key)
    assert job is not None and job.state == "sent", job
    assert line.calls == ["default|+33140000102|102|users|0140000190"]


@pytest.mark.parametrize("uid", ["1765000000.7", "../../x", "102/../../x", "1e9"])
def test_the_sent_document_is_kept_owner_only_and_a_forged_uid_names_no_file(
        tmp_path: Path, pdfs: dict[str, bytes], uid: str) -> None:  # noqa: F811
    """The `.fax` record (Asterisk's hang-up handler) names the sent document's job; a
    record with any other uid is not read at all (no document, the try has no outcome)."""
    spool, site, key = _queued_job(tmp_path, pdfs)
    line = FakeAsterisk(tmp_path / "out",
                        [({"dialstatus": "", "cause": "16"}, {**SENT, "uid": uid})])
    documents = tmp_path / "documents"
    asyncio.run(_dialer(tmp_path, spool, site, line, documents).send_due())
    job = spool.get(key)
    assert job is not None
    kept = sorted(documents.rglob("*.pdf")) if documents.exists() else []
    if uid == "1765000000.7":
        assert job.state == "sent" and job.result["uid"] == uid, job
        assert kept == [documents / "102" / f"{uid}.pdf"]
        assert kept[0].read_bytes().startswith(b"%PDF-")
        assert kept[0].stat().st_mode & 0o777 == 0o600
    else:
        assert job.state == "queued" and "no outcome" in job.reason, job
        assert kept == [] and not (tmp_path / "x.pdf").exists()


def test_a_sent_fax_is_one_record_of_its_sender_with_the_number_it_faxed() -> None:
    """Mail2Fax's originated call (two Local halves and the trunk's leg) is one record: the
    caller its sender (from the fax marks), the dialled number the dialled half's
    `userfield`, the document `<sender>/<uid>.pdf`; a forged userfield names no number."""
    directory = Directory.of(Site.model_validate({
        "system": {"language_region": {"country_code": "33"}},
        "users": [{"name": "Bruno", "extension": "102"}]}))

    def legs(userfield: str) -> list[dict[str, object]]:
        send = {"linkedid": "5.0", "uniqueid": "5.0", "sequence": 1,
                "channel": "Local/93bdf492c5254c28@wildix-fax-send-call-00000001;1",
                "dstchannel": "", "src": "", "dst": "93bdf492c5254c28",
                "disposition": "ANSWERED", "start": 1e9, "answer": 1e9 + 1, "end": 1e9 + 60,
                "lastapp": "SendFAX", "dcontext": "wildix-fax-send", "wms_fax": "sent",
                "wms_fax_job": "5.0", "wms_fax_user": "102", "wms_fax_status": "SUCCESS",
                "wms_fax_pages": "10", "wms_fax_remote": ""}
        dial = {"linkedid": "5.0", "uniqueid": "5.1", "sequence": 2,
                "channel": "Local/93bdf492c5254c28@wildix-fax-send-call-00000001;2",
                "dstchannel": "PJSIP/trunk-faxg711-00000003", "src": "102", "dst": "s",
                "disposition": "ANSWERED", "start": 1e9, "answer": 1e9 + 1, "end": 1e9 + 60,
                "lastapp": "Dial", "dcontext": "wildix-trunk-faxg711", "userfield": userfield}
        return [send, dial]

    record = assemble("5.0", legs("0140000190"), directory)
    assert (record.fax, record.fax_status, record.fax_pages) == ("sent", "SUCCESS", 10)
    assert (record.caller_user, record.caller_name, record.caller_number) == (
        "102", "Bruno", "102")
    assert record.dialled == "0140000190" and record.callee_number == "+33140000190"
    assert record.direction == "outgoing" and record.fax_document == "102/5.0.pdf"
    forged = assemble("5.0", legs("0140000190;x"), directory)
    assert forged.dialled == "" and forged.caller_user == "102"


def test_pages_swapped_during_the_call_are_not_what_is_kept(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:  # noqa: F811
    """The poller's user swaps the job's pages for a link to another fax while the call
    runs: the document kept is the copy Asterisk sent, not what the link names."""
    spool, site, key = _queued_job(tmp_path, pdfs)
    other = tmp_path / "someone-elses-fax.tif"
    other.write_bytes(b"II*\x00 not this one")

    class Swapping(FakeAsterisk):
        async def originate(self, tag: str) -> None:
            spool.tiff(key).unlink()
            spool.tiff(key).symlink_to(other)
            await super().originate(tag)

    line = Swapping(tmp_path / "out",
                    [({"dialstatus": "", "cause": "16"}, {**SENT, "uid": "1765000000.8"})])
    documents = tmp_path / "documents"
    asyncio.run(_dialer(tmp_path, spool, site, line, documents).send_due())
    job = spool.get(key)
    assert job is not None and job.state == "sent", job
    kept = documents / "102" / "1765000000.8.pdf"
    assert kept.read_bytes().startswith(b"%PDF-")   # tiff2pdf of the real pages
