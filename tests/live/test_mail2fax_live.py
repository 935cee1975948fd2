"""Issue 20, Mail2Fax through the lab (must-show 3's IMAP part and item 4 end to end): a
known user mails a 2-page PDF to the fax mailbox on a real dovecot; `fax poll` makes the
job, the dialer places the fax call through the lab's console into the routing procedure
as the sender's ACL group, to the fax user's extension (190: the lab has no trunk to reach
the fax DID from outside; the call takes the same Fax2Mail receive path), SendFAX sends it
(ECM), ReceiveFAX takes it; the report mail (pages, duration) and the received fax's mail
reach a real SMTP server (aiosmtpd) with the same page count. Then a job to a class the
sender's group may not call (forged past `fax poll`'s refusal) is refused by the dialer
before any call, and the same request placed through the console anyway is refused by the
routing procedure (cause 21): no fax is received."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support.cli_run import assert_no_traceback, run
from support.dovecot_server import DovecotServer
from support.fax_pages import make_pdf
from support.live_site import LiveSite, example_site
from support.smtp_server import SmtpServer
from unit.test_mail2fax import BRUNO, PROTECTION, mail

from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.services.fax.dialer import ConsoleLine, Dialer, DialSettings
from wildix_ast.services.fax.jobs import JobSpool
from wildix_ast.services.fax.outbound import poll
from wildix_ast.store import open_store
from wildix_ast.store.mail2fax import profiles_with_secrets
from wildix_ast.store.vault import with_secrets

PAGES = 2
COPIES = "fax-copies@example.com"


def test_a_mailed_pdf_is_faxed_to_the_fax_user_and_both_mails_count_the_same_pages(
        clean_live: LiveSite, tmp_path: Path) -> None:
    smtp = SmtpServer(tmp_path)
    smtp.start()
    dovecot = DovecotServer()
    dovecot.start()
    try:
        site = example_site().model_copy(update={
            "smtp_profiles": [SmtpProfile(**smtp.profile())],
            "fax_server": FaxServer(copy_address=COPIES),
            "mail2fax_profiles": [Mail2FaxProfile.model_validate(
                {**dovecot.profile(), "protection_password": PROTECTION})]})
        db = str(tmp_path / "m2f.sqlite3")
        with open_store(db) as store:
            store.import_site(site)
            with_secrets(site, store)
            stored = store.export_site()
            (profile,) = profiles_with_secrets(store, stored)
        lab = clean_live.lab
        out = lab.host_path(lab.paths.fax_out_spool)
        received = lab.host_path(lab.paths.fax_spool)
        for sub in ("send", "tmp", "done"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (received / "new").iterdir():
            old.unlink()

        pdf = make_pdf(tmp_path / "invoice.pdf", PAGES).read_bytes()
        dovecot.append(mail(BRUNO, f"190 {PROTECTION}",
                            [("invoice.pdf", "application/pdf", pdf)]))
        queue = tmp_path / "queue"
        spool = JobSpool(tmp_path / "jobs")
        (taken,) = poll(profile, stored, spool, copy_to=[COPIES], queue_root=queue)
        assert taken.state == "queued", taken.reason
        assert dovecot.inbox() == []

        async def send() -> list[object]:
            async with clean_live.console() as console:
                dialer = Dialer(spool, ConsoleLine(console), out, stored,
                                DialSettings(attempts=1), (COPIES,), queue)
                return list(await dialer.send_due())

        started = time.monotonic()
        asyncio.run(send())
        job = spool.get(taken.key)
        assert job is not None
        print(f"fax of {PAGES} pages sent in {time.monotonic() - started:.1f} s: "
              f"{job.state}, {job.reason}, {job.result}")
        assert job.state == "sent", (job.reason, job.result)
        assert job.result.get("pages") == str(PAGES)

        collected = run("fax", "collect", "--json", "--spool", str(received), "--db", db,
                        "--queue", str(queue))
        assert_no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
        sent = run("mail", "send", "--json", "--queue", str(queue), "--db", db)
        assert_no_traceback(sent)
        assert sent.returncode == 0, sent.stderr
        mails = smtp.messages()
        by_to = sorted((m.recipients, str(m.message["Subject"])) for m in mails)
        print(by_to)
        reports = [m for m in mails if m.recipients == (BRUNO,)]
        faxes = [m for m in mails if m.recipients == ("compta@acme.fr",)]
        assert len(reports) == 1 and len(faxes) == 1, by_to
        report = reports[0].message.get_body(("plain",))
        fax = faxes[0].message.get_body(("plain",))
        assert report is not None and fax is not None
        assert f"Pages: {PAGES} of {PAGES}" in report.get_content()
        assert f"Pages: {PAGES}" in fax.get_content()
        assert "Duration: " in report.get_content()

        # a forged job to an international number as 102: the dialer refuses it before
        # any call (its second check) ...
        forged = job.moved(key="f" * 32, state="queued", number="+442071234567",
                           attempts=0, result={}, call_tag="", history=[])
        spool.put(forged, spool.tiff(job.key).read_bytes())
        asyncio.run(send())
        refused = spool.get("f" * 32)
        assert refused is not None and refused.state == "failed", refused
        assert refused.attempts == 0 and "not sent: " in refused.reason, refused
        assert "may not call" in refused.reason, refused
        assert list((out / "done").iterdir()) == []      # no call was placed

        # ... and the dialplan checks the class again: the same request placed through the
        # console as a dialer without that check would place it, refused with cause 21
        async def place_directly() -> None:
            async with clean_live.console() as console:
                line = ConsoleLine(console)
                await line.request("f" * 16, "default|+33140000102|102|users|+442071234567")
                await line.originate("f" * 16)

        asyncio.run(place_directly())
        call_record = out / "done" / f"{'f' * 16}.call"
        deadline = time.monotonic() + 20
        while not call_record.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "cause=21\n" in call_record.read_text(), call_record.read_text()
        assert not (out / "done" / f"{'f' * 16}.fax").exists()   # never answered, no fax
        assert list((received / "new").glob("*.job")) == []   # collected before; none new
    finally:
        dovecot.close()
        smtp.stop()
