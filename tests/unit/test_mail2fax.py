"""Mail2Fax (issue 20 items 4 and 5): a mail becomes one fax job or one refusal, exactly
once; bad input gets a report (or, for an unknown sender, a logged error), never a
traceback; the number is routed with the sender's ACL group; the dialer retries busy / no
answer, recovers a SIGKILLed try without a second call, and reports pages and duration.

Real ghostscript converts real PDFs; the dialer's `line` here writes the records the
dialplan's hang-up handlers would (the real dialplan is in tests/live/test_mail2fax_live.py).
"""

from __future__ import annotations

import asyncio
import subprocess
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from support.fax_pages import make_pdf
from support.live_site import example_site

from wildix_ast.asterisk.dialplan_builder import Extension
from wildix_ast.asterisk.fax_send_contexts import fax_send_contexts
from wildix_ast.mail.queue import MailQueue
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.site import Site
from wildix_ast.services.fax.dialer import Dialer, DialSettings
from wildix_ast.services.fax.jobs import JobSpool
from wildix_ast.services.fax.outbound import intake, tiff_pages

ALICE = "alice.martin@acme.fr"     # group direction: international allowed
BRUNO = "bruno.lefevre@acme.fr"    # group default: no international
PROTECTION = "Fax-Pass42"


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("pdfs")
    good = make_pdf(folder / "good.pdf", 2)
    encrypted = folder / "encrypted.pdf"
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pdfwrite",
                    "-sOwnerPassword=owner1", "-sUserPassword=user1",
                    f"-sOutputFile={encrypted}", str(good)], check=True, timeout=60)
    data = good.read_bytes()
    return {"good": data, "encrypted": encrypted.read_bytes(),
            "corrupt": data[:len(data) // 3] + b"\x00garbage" * 50,
            "fake": b"%PDF-1.4\nthis is not a PDF at all\n%%EOF\n"}


def _profile(**changes: object) -> Mail2FaxProfile:
    data: dict[str, object] = {"name": "invoices", "server": "127.0.0.1", "user": "fax",
                               "password": "x" * 8, "protection_password": PROTECTION}
    data.update(changes)
    return Mail2FaxProfile.model_validate(data)


def _site(profile: Mail2FaxProfile) -> Site:
    return example_site().model_copy(update={"mail2fax_profiles": [profile]})


def mail(sender: str, subject: str, attachments: list[tuple[str, str, bytes]],
         body: str = "Please fax.\n", to: str = "fax@acme.fr") -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = make_msgid(domain="acme.fr")
    message.set_content(body)
    for name, kind, data in attachments:
        main, sub = kind.split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return message.as_bytes()


def _pdf(data: bytes, name: str = "invoice.pdf") -> list[tuple[str, str, bytes]]:
    return [(name, "application/pdf", data)]


def _reports(queue: Path) -> list[tuple[str, str, str]]:
    q = MailQueue(queue)
    return sorted((e.to, e.subject, q.load(e.id).body) for e in q.entries())


def test_a_known_users_pdf_becomes_one_job_once(tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    profile = _profile()
    spool = JobSpool(tmp_path / "jobs")
    raw = mail(BRUNO, f"01 40 00 01 90 {PROTECTION}", _pdf(pdfs["good"]))
    job, new = intake(raw, profile, _site(profile), spool, [], tmp_path / "queue")
    assert new and job.state == "queued", job
    assert (job.number, job.extension, job.pages, job.call_class) == ("0140000190", "102", 2,
                                                                      "national")
    tiff = spool.tiff(job.key).read_bytes()
    assert tiff_pages(tiff) == 2 and tiff[:2] in (b"II", b"MM")
    again, new_again = intake(raw, profile, _site(profile), spool, [], tmp_path / "queue")
    assert not new_again and again == job
    assert len(spool.jobs()) == 1 and _reports(tmp_path / "queue") == []
    # the same Message-ID with other content is another mail: another job
    other = raw.replace(b"Please fax.", b"Please fax again.")
    third, new_third = intake(other, profile, _site(profile), spool, [], tmp_path / "queue")
    assert new_third and third.key != job.key


def test_the_password_may_be_a_body_line_and_the_number_the_recipient(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    profile = _profile()
    raw = mail(ALICE, "Facture 2026-114", _pdf(pdfs["good"]),
               body=f"Bonjour,\npassword: {PROTECTION}\n", to="+442071234567@fax.acme.fr")
    job, _ = intake(raw, profile, _site(profile), JobSpool(tmp_path / "jobs"), [],
                    tmp_path / "queue")
    assert (job.state, job.number, job.call_class) == ("queued", "+442071234567",
                                                       "international"), job.reason


BAD = [
    ("no_attachment", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}", [])),
    ("not_pdf", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}",
                               [("a.docx", "application/octet-stream", b"PK\x03\x04")])),
    ("not_pdf", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}",
                               _pdf(b"GIF89a not a pdf", "renamed.pdf"))),
    ("corrupt_pdf", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}", _pdf(p["corrupt"]))),
    ("corrupt_pdf", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}", _pdf(p["fake"]))),
    ("encrypted_pdf", lambda p: mail(BRUNO, f"0140000190 {PROTECTION}",
                                     _pdf(p["encrypted"]))),
    ("wrong_password", lambda p: mail(BRUNO, "0140000190 guess", _pdf(p["good"]))),
    ("wrong_password", lambda p: mail(BRUNO, "0140000190", _pdf(p["good"]))),
    ("forbidden_number", lambda p: mail(BRUNO, f"+442071234567 {PROTECTION}",
                                        _pdf(p["good"]))),
    ("unknown_number", lambda p: mail(BRUNO, f"0999 {PROTECTION}", _pdf(p["good"]))),
    ("no_number", lambda p: mail(BRUNO, f"Invoice {PROTECTION}", _pdf(p["good"]))),
    ("forbidden_number", lambda p: mail(BRUNO, f"112 {PROTECTION}", _pdf(p["good"]))),
]


def test_a_password_of_digits_does_not_join_the_number(tmp_path: Path,
                                                        pdfs: dict[str, bytes]) -> None:
    profile = _profile(protection_password="4242")
    raw = mail(BRUNO, "01 40 00 01 90 4242", _pdf(pdfs["good"]))
    job, _ = intake(raw, profile, _site(profile), JobSpool(tmp_path / "jobs"), [],
                    tmp_path / "queue")
    assert (job.state, job.number) == ("queued", "0140000190"), job.reason


@pytest.mark.parametrize(("code", "make"), BAD, ids=[f"{c}-{i}" for i, (c, _) in
                                                      enumerate(BAD)])
def test_bad_input_is_refused_with_a_report_to_the_sender(
        tmp_path: Path, pdfs: dict[str, bytes], code: str, make: object) -> None:
    profile = _profile()
    spool = JobSpool(tmp_path / "jobs")
    raw = make(pdfs)  # type: ignore[operator]
    job, _ = intake(raw, profile, _site(profile), spool, ["archive@acme.fr"],
                    tmp_path / "queue")
    assert job.state == "refused" and job.reason.startswith(code + ":"), job.reason
    assert not spool.tiff(job.key).exists()
    reports = _reports(tmp_path / "queue")
    assert [r[0] for r in reports] == ["archive@acme.fr", BRUNO]
    assert all("refused" in subject and job.reason in body for _, subject, body in reports)
    # taken again (the mail was not acknowledged): no second report
    intake(raw, profile, _site(profile), spool, ["archive@acme.fr"], tmp_path / "queue")
    assert len(_reports(tmp_path / "queue")) == 2


def test_an_unknown_sender_gets_no_report_and_the_mail_is_kept(
        tmp_path: Path, pdfs: dict[str, bytes], caplog: pytest.LogCaptureFixture) -> None:
    profile = _profile()
    raw = mail("mallory@evil.example", f"0140000190 {PROTECTION}", _pdf(pdfs["good"]))
    job, _ = intake(raw, profile, _site(profile), JobSpool(tmp_path / "jobs"), [],
                    tmp_path / "queue")
    assert job.state == "refused" and job.reason.startswith("unknown_sender")
    assert job.keep_mail and not job.report
    assert _reports(tmp_path / "queue") == []
    assert "mallory@evil.example" in caplog.text


def test_an_allowed_sender_faxes_as_the_send_as_user(tmp_path: Path,
                                                     pdfs: dict[str, bytes]) -> None:
    profile = _profile(allowed_senders=["billing@partner.example"], send_as="102",
                       protection_password=None)
    raw = mail("Billing <billing@partner.example>", "+442071234567", _pdf(pdfs["good"]))
    job, _ = intake(raw, profile, _site(profile), JobSpool(tmp_path / "jobs"), [],
                    tmp_path / "queue")
    # 102's group (default) may not call abroad: the allowed sender may not either
    assert job.state == "refused" and job.reason.startswith("forbidden_number"), job.reason
    assert job.extension == "102"


def test_allowed_senders_need_a_send_as_user() -> None:
    with pytest.raises(ValueError, match="send_as"):
        _profile(allowed_senders=["billing@partner.example"])


# --- the dialer ------------------------------------------------------------------------


class FakeAsterisk:
    """Plays the dialplan's part: takes the request from 'AstDB' and drops the hang-up
    handlers' records, with the outcomes a test scripts (one per call)."""

    def __init__(self, out: Path, outcomes: list[tuple[dict[str, str], dict[str, str]]]
                 ) -> None:
        self.out = out
        self.outcomes = outcomes
        self.astdb: dict[str, str] = {}
        self.calls: list[str] = []

    async def request(self, tag: str, value: str) -> None:
        self.astdb[tag] = value

    async def take_request(self, tag: str) -> bool:
        return self.astdb.pop(tag, None) is not None

    async def originate(self, tag: str) -> None:
        request = self.astdb.pop(tag)
        self.calls.append(request)
        call, fax = self.outcomes.pop(0)
        (self.out / "done" / f"{tag}.call").write_text(
            "".join(f"{k}={v}\n" for k, v in {"job": tag, **call}.items()))
        if fax:
            (self.out / "done" / f"{tag}.fax").write_text(
                "".join(f"{k}={v}\n" for k, v in {"job": tag, **fax}.items()))


def _queued_job(tmp_path: Path, pdfs: dict[str, bytes]) -> tuple[JobSpool, Site, str]:
    profile = _profile()
    site = _site(profile)
    spool = JobSpool(tmp_path / "jobs")
    job, _ = intake(mail(BRUNO, f"0140000190 {PROTECTION}", _pdf(pdfs["good"])), profile,
                    site, spool, [], tmp_path / "queue")
    assert job.state == "queued"
    for sub in ("send", "done", "tmp"):
        (tmp_path / "out" / sub).mkdir(parents=True, exist_ok=True)
    return spool, site, job.key


SENT = {"status": "SUCCESS", "statusstr": "OK", "pages": "2", "duration": "41",
        "remote": "ACME COMPTA", "rate": "14400", "ecm": "yes"}


def test_busy_then_sent_is_retried_and_reported_with_pages_and_duration(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    line = FakeAsterisk(tmp_path / "out", [({"dialstatus": "BUSY", "cause": "17"}, {}),
                                           ({"dialstatus": "", "cause": "16"}, SENT)])
    clock = [1000.0]
    dialer = Dialer(spool, line, tmp_path / "out", site,
                    DialSettings(retry_base=30, record_wait=0.1), ("archive@acme.fr",),
                    tmp_path / "queue", clock=lambda: clock[0])
    asyncio.run(dialer.send_due())
    job = spool.get(key)
    assert job is not None and job.state == "queued" and job.reason == "busy"
    assert job.next_try == 1030.0
    asyncio.run(dialer.send_due())  # not due yet: no call
    assert len(line.calls) == 1
    clock[0] = 1031.0
    asyncio.run(dialer.send_due())
    job = spool.get(key)
    assert job is not None and job.state == "sent" and job.attempts == 2
    assert line.calls == ["default|+33140000102|102|users|0140000190"] * 2
    reports = _reports(tmp_path / "queue")
    assert [r[0] for r in reports] == ["archive@acme.fr", BRUNO]
    assert "sent: 2 pages" in reports[1][1]
    assert "Pages: 2 of 2" in reports[1][2] and "Duration: 41 s" in reports[1][2]
    assert list((tmp_path / "out" / "send").iterdir()) == []   # cleaned up
    assert list((tmp_path / "out" / "done").iterdir()) == []


def test_a_voice_answer_fails_after_every_try_with_the_reason(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    voice = ({"dialstatus": "ANSWER", "cause": "16"},
             {"status": "FAILED", "statusstr": "DISCONNECTED", "error": "HDLC_CARRIER",
              "pages": "0", "duration": "30"})
    line = FakeAsterisk(tmp_path / "out", [voice] * 3)
    dialer = Dialer(spool, line, tmp_path / "out", site,
                    DialSettings(retry_base=0.001, record_wait=0.1), (), tmp_path / "queue")
    for _ in range(3):
        asyncio.run(dialer.send_due())
        asyncio.run(asyncio.sleep(0.01))
    job = spool.get(key)
    assert job is not None and job.state == "failed" and job.attempts == 3, job
    assert "after 0 of 2 pages: DISCONNECTED" in job.reason
    (report,) = _reports(tmp_path / "queue")
    assert "not sent" in report[1] and "DISCONNECTED" in report[2]


def test_the_dialplans_refusal_is_final(tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    line = FakeAsterisk(tmp_path / "out", [({"dialstatus": "", "cause": "21"}, {})])
    dialer = Dialer(spool, line, tmp_path / "out", site, DialSettings(record_wait=0.1), (),
                    tmp_path / "queue")
    asyncio.run(dialer.send_due())
    job = spool.get(key)
    assert job is not None and job.state == "failed" and job.attempts == 1
    assert "refused the call" in job.reason


def test_a_try_interrupted_before_or_during_its_call_is_never_dialled_twice(
        tmp_path: Path, pdfs: dict[str, bytes]) -> None:
    spool, site, key = _queued_job(tmp_path, pdfs)
    line = FakeAsterisk(tmp_path / "out", [({"dialstatus": "", "cause": "16"}, SENT)])
    dialer = Dialer(spool, line, tmp_path / "out", site, DialSettings(record_wait=0.1), (),
                    tmp_path / "queue")
    job = spool.get(key)
    assert job is not None
    # killed after the request went to AstDB, before the originate: no call took it
    spool.put(job.moved(state="dialing", call_tag="0123456789abcdef", attempts=1,
                        call_started=0.0))
    line.astdb["0123456789abcdef"] = "default||102|users|0140000190"
    asyncio.run(dialer.send_due())
    job = spool.get(key)
    assert job is not None and job.state == "sent" and job.attempts == 1, job
    assert len(line.calls) == 1 and line.astdb == {}
    # killed while the call ran: its records arrive; recovered without a new call
    spool2, site2, key2 = _queued_job(tmp_path / "b", pdfs)
    line2 = FakeAsterisk(tmp_path / "b" / "out", [({"dialstatus": "", "cause": "16"}, SENT)])
    job2 = spool2.get(key2)
    assert job2 is not None
    spool2.put(job2.moved(state="dialing", call_tag="fedcba9876543210", attempts=1,
                          call_started=0.0))
    asyncio.run(line2.request("fedcba9876543210", "x"))
    asyncio.run(line2.originate("fedcba9876543210"))  # the call Asterisk went on with
    dialer2 = Dialer(spool2, line2, tmp_path / "b" / "out", site2,
                     DialSettings(record_wait=0.1), (), tmp_path / "b" / "queue")
    asyncio.run(dialer2.send_due())
    job2 = spool2.get(key2)
    assert job2 is not None and job2.state == "sent" and job2.attempts == 1
    assert len(line2.calls) == 1


def _steps() -> list[str]:
    return [step for context in fax_send_contexts() for ext in context.extensions
            if isinstance(ext, Extension) for _, step in ext.steps]


def test_the_hang_up_handlers_filter_every_value_they_write() -> None:
    lines = [step for step in _steps() if "FILE(" in step and "al,u)=" in step]
    assert len(lines) == 3 + 11
    for step in lines:
        value = step.split("al,u)=", 1)[1].split("=", 1)[1].removesuffix(")")
        assert value.startswith(("${FILTER(", "$[${EPOCH}")) or \
            value in ("${WILDIX_FAX_OUT_JOB}", "${WILDIX_FAX_JOB}"), step
    # the job id itself is FILTERed to hex digits where it is set, on both halves; the
    # call history's job name and sender to digits
    sets = [step for step in _steps() if step.startswith("Set(WILDIX_FAX_OUT_JOB=")]
    assert sets == ["Set(WILDIX_FAX_OUT_JOB=${FILTER(0-9a-f,${EXTEN})})"] * 2
    assert [step for step in _steps() if step.startswith(("Set(WILDIX_FAX_JOB=",
                                                          "Set(WILDIX_FAX_USER="))] == [
        "Set(WILDIX_FAX_JOB=${FILTER(0-9.,${UNIQUEID})})",
        "Set(WILDIX_FAX_USER=${FILTER(0-9,${SHARED(WILDIX_FAX_OUT_USER,"
        "${CHANNEL(name):0:-1}2)})})"]


def test_profiles_are_stored_with_their_secrets_in_the_vault_only(tmp_path: Path) -> None:
    from wildix_ast.model.settings_file import dump_site
    from wildix_ast.store import open_store
    from wildix_ast.store.mail2fax import profiles_with_secrets
    from wildix_ast.store.vault import with_secrets

    profile = _profile(password="Box-secret9", allowed_senders=["b@partner.example"],
                       send_as="102", keep_on_server=True)
    site = _site(profile)
    db = tmp_path / "s.sqlite3"
    with open_store(str(db)) as store:
        store.import_site(site)
        with_secrets(site, store)
        stored = store.export_site()
        (bare,) = stored.mail2fax_profiles
        assert bare.password is None and bare.protection_password is None
        assert (bare.allowed_senders, bare.send_as, bare.keep_on_server) == (
            ["b@partner.example"], "102", True)
        (full,) = profiles_with_secrets(store, stored)
        assert (full.password, full.protection_password) == ("Box-secret9", PROTECTION)
        exported = dump_site(stored, include_secrets=False)
        assert "Box-secret9" not in exported and PROTECTION not in exported
        with_them = dump_site(with_secrets(stored, store), include_secrets=True)
        assert "Box-secret9" in with_them and PROTECTION in with_them
        # a re-import without the passwords keeps the vault's
        store.import_site(stored)
        (again,) = profiles_with_secrets(store, store.export_site())
        assert again.password == "Box-secret9"
    assert "Box-secret9" not in repr(full)


@pytest.mark.slow
def test_validate_locates_bad_profiles(tmp_path: Path) -> None:
    from support.cli_run import EXAMPLE, assert_no_traceback, run

    text = EXAMPLE.read_text() + (
        "mail2fax_profiles:\n"
        "  - name: invoices\n    server: mail.acme.fr\n    user: fax@acme.fr\n"
        "    procedure: nowhere\n    send_as: \"999\"\n"
        "    allowed_senders: [ok@partner.example]\n"
        "  - name: bad\n    server: \"mail.acme.fr; rm -rf /\"\n    user: fax\n"
        "    protection_password: \"has space\"\n")
    site = tmp_path / "site.yaml"
    site.write_text(text)
    result = run("validate", str(site))
    assert_no_traceback(result)
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for where in ("mail2fax_profiles[0].procedure", "mail2fax_profiles[0].send_as",
                  "mail2fax_profiles[1].server", "mail2fax_profiles[1].protection_password"):
        assert where in output, output


@pytest.mark.slow
def test_fax_jobs_and_send_without_a_spool_are_clear(tmp_path: Path,
                                                     pdfs: dict[str, bytes]) -> None:
    from support.cli_run import assert_no_traceback, run

    _queued_job(tmp_path, pdfs)
    shown = run("fax", "jobs", "--jobs", str(tmp_path / "jobs"))
    assert shown.returncode == 0 and "queued" in shown.stdout and "0140000190" in shown.stdout
    bad = run("fax", "jobs", "--state", "lost", "--jobs", str(tmp_path / "jobs"))
    assert bad.returncode == 2 and "not one of" in bad.stderr
    db = tmp_path / "s.sqlite3"
    from wildix_ast.store import open_store

    with open_store(str(db)) as store:
        store.import_site(_site(_profile()))
    sent = run("fax", "send", "--db", str(db), "--jobs", str(tmp_path / "jobs"),
               "--out-spool", str(tmp_path / "nowhere"))
    assert_no_traceback(sent)
    assert sent.returncode == 15 and "not Asterisk's Mail2Fax spool" in sent.stderr


def test_the_fax_half_starts_sendfax_only_once_its_dialled_half_is_bridged() -> None:
    # SendFAX reads the T.38 state once at its start, through the Local channel from the
    # channel bridged to the dialled half: before that bridge it reads "unavailable" and
    # refuses the callee's T.38 switch (docs/fax.md)
    from wildix_ast.asterisk.fax_send_contexts import (
        BRIDGE_WAIT_STEP,
        BRIDGE_WAIT_STEPS,
        send_context,
    )

    (ext,) = [e for e in send_context().extensions if isinstance(e, Extension)]
    labels = [label for label, _ in ext.steps]
    apps = [app for _, app in ext.steps]
    check = apps[labels.index("bridged")]
    send = labels.index("send")
    assert apps[send].startswith("SendFAX(") and apps.count(apps[send]) == 1
    assert "${IMPORT(${CHANNEL(name):0:-1}2,BRIDGEPEER)}" in check
    assert check.endswith("?send)")
    # the loop between the check and SendFAX waits and counts, and is bounded
    loop = apps[labels.index("bridged") + 1:send]
    assert loop == [f"Wait({BRIDGE_WAIT_STEP})",
                    "Set(WILDIX_FAX_OUT_WAITS=$[${WILDIX_FAX_OUT_WAITS} + 1])",
                    "Goto(bridged)"]
    assert f"${{WILDIX_FAX_OUT_WAITS}} >= {BRIDGE_WAIT_STEPS}" in check
    assert BRIDGE_WAIT_STEP * BRIDGE_WAIT_STEPS <= 3.0
    assert labels.index("bridged") > apps.index("Set(WILDIX_FAX_OUT_WAITS=0)")
    # the hang-up handler is pushed before the wait: a hang-up meanwhile still writes .fax
    assert apps.index("Set(CHANNEL(hangup_handler_push)=wildix-fax-send-done,s,1)") < \
        labels.index("bridged")
