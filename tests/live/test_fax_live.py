"""Issue 20, Fax2Mail (must-show 1, the receive side): a lab leg runs SendFax of a 3-page PDF
(rendered to a fax TIFF) to the fax user's DID, as audio (not T.38) through a Local
channel: signed linear, not a G.711-coded SIP/RTP leg (docs/fax.md, "Not yet"); ReceiveFAX
answers it through wildix-did, the
hang-up handler drops the job, `wildix-ast fax collect` turns it into a PDF queued through
the mail queue (and keeps the PDF for the call history, where the fax call is one record
referring to it), `wildix-ast mail send` delivers it to a real SMTP server (aiosmtpd,
STARTTLS + AUTH); the mailed PDF has 3 pages whose images equal the original's rendering.

Tolerance: both PDFs are rendered by ghostscript at 50 dpi, anti-aliased, to 8-bit grey; a
received page must differ from its original by a mean of at most 12 grey levels (of 255),
and by less than a third of its difference from any other original page. The fax path
rescales to 204x196 dpi and thresholds to black and white (edges move by up to one fax
pixel, grey anti-aliasing becomes black or white): measured differences are a few levels;
a wrong, missing, shifted or blank page differs by far more than 12."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from support.cli_run import assert_no_traceback, run
from support.fax_pages import fax_tiff, make_pdf, mean_difference, render
from support.live_site import LiveSite, example_site
from support.smtp_server import SmtpServer

from wildix_ast.asterisk import names
from wildix_ast.model.call_history import BackendKind, CallHistory, CallHistoryBackend
from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.services.fax.documents import document_path
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets

PAGES = 3
DPI = 50
MAX_MEAN_DIFFERENCE = 8.0
FAX_CALLER = "+33155501234"
TEST_CONTEXT = "fax-test-sender"
COPIES = "fax-copies@example.com"


def _originate_fax(live: LiveSite, tiff: str, did: str) -> None:
    """A Local channel whose ;1 half runs SendFax; its ;2 half, as a trunk's call would,
    carries the caller's number into wildix-did (the lab's console: the site's AMI
    account may not originate applications)."""
    async def go() -> None:
        async with live.console() as console:
            for step, app in enumerate((f"Set(CALLERID(num)={FAX_CALLER})",
                                        f"Goto({names.DID_CONTEXT},{did},1)"), 1):
                await console.command(f"dialplan add extension {did},{step},{app} into "
                                      f"{TEST_CONTEXT} replace")
            await console.command(f"channel originate Local/{did}@{TEST_CONTEXT} "
                                  f"application SendFax {tiff},f")

    asyncio.run(go())


def _the_fax_is_once_in_the_call_history(live: LiveSite, tmp_path: Path, db: str, job: str,
                                         documents: Path, since: float) -> None:
    """The call history (issue 20 item 3): the fax call is one record in `cdr list
    --json` with its status, pages, remote station and a reference to its PDF, which the
    fax service kept (owner-only). Two `cdr collect --once` passes a second apart: the
    first reads the call's end, the second assembles it (GRACE). The lab's call log is
    shared by the session's tests: only the calls that began after `since` count."""
    spool = str(tmp_path / "cdr-spool.sqlite3")
    for _ in range(2):
        passed = run("cdr", "collect", "--once", "--log-dir", str(live.lab.log_dir),
                     "--spool", spool, "--brake-dir", str(tmp_path / "brake"), "--db", db)
        assert passed.returncode == 0, passed.stderr
        time.sleep(1.0)
    listed = run("cdr", "list", "--json", "--db", db)
    assert listed.returncode == 0, listed.stderr
    calls = json.loads(listed.stdout)["calls"]
    faxes = [c for c in calls if c["fax"] and c["start"] >= since]
    assert len(faxes) == 1, faxes
    (fax,) = faxes
    print({k: fax[k] for k in ("call_id", "callee_user", "fax", "fax_status", "fax_pages",
                               "fax_remote", "fax_document", "duration")})
    assert (fax["fax"], fax["fax_status"], fax["fax_pages"]) == ("received", "SUCCESS", PAGES)
    assert fax["callee_user"] == "190" and fax["fax_document"] == f"190/{job}.pdf"
    document = document_path(documents, fax["fax_document"])
    assert document.read_bytes().startswith(b"%PDF-")
    assert document.stat().st_mode & 0o777 == 0o600


def test_a_3_page_fax_to_the_fax_did_arrives_by_mail_as_the_same_3_pages(
        clean_live: LiveSite, tmp_path: Path) -> None:
    since = time.time()
    smtp = SmtpServer(tmp_path)
    smtp.start()
    try:
        site = example_site()
        # the call history on this machine: a SQLite backend in the test's folder
        history = CallHistory(backends=[CallHistoryBackend(
            name="local", kind=BackendKind.SQLITE, path=str(tmp_path / "history.sqlite3"))])
        site = site.model_copy(update={"smtp_profiles": [SmtpProfile(**smtp.profile())],
                                       "fax_server": FaxServer(copy_address=COPIES),
                                       "call_history": history})
        db = str(tmp_path / "fax.sqlite3")
        with open_store(db) as store:
            store.import_site(site)
            with_secrets(site, store)
        fax_user = next(u for u in site.users if u.type == "fax")
        assert fax_user.fax_did is not None and fax_user.email is not None
        lab = clean_live.lab
        spool = lab.host_path(lab.paths.fax_spool)
        for old in (spool / "new").iterdir():  # what earlier runs left
            old.unlink()

        original = make_pdf(tmp_path / "original.pdf", PAGES)
        inside = lab.paths.spool / "fax-test-send.tif"
        fax_tiff(original, lab.host_path(inside))
        started = time.monotonic()
        _originate_fax(clean_live, str(inside), fax_user.fax_did)
        deadline = time.monotonic() + 150
        while not list((spool / "new").glob("*.job")) and time.monotonic() < deadline:
            time.sleep(0.5)
        (record,) = (spool / "new").glob("*.job")
        print(f"fax of {PAGES} pages received in {time.monotonic() - started:.1f} s")
        print(record.read_text())
        assert list((spool / "tmp").glob("*.job")) == []

        queue = str(tmp_path / "queue")
        documents = tmp_path / "fax-documents"
        collected = run("fax", "collect", "--json", "--spool", str(spool), "--db", db,
                        "--queue", queue, "--documents", str(documents))
        assert_no_traceback(collected)
        assert collected.returncode == 0, collected.stderr
        _the_fax_is_once_in_the_call_history(clean_live, tmp_path, db, record.stem,
                                             documents, since)
        again = run("fax", "collect", "--json", "--spool", str(spool), "--db", db,
                    "--queue", queue)
        assert again.returncode == 0 and '"jobs": []' in again.stdout, again.stdout
        sent = run("mail", "send", "--json", "--queue", queue, "--db", db)
        assert_no_traceback(sent)
        assert sent.returncode == 0, sent.stderr

        mails = smtp.messages()
        assert sorted(m.recipients for m in mails) == [(fax_user.email,),
                                                       (COPIES,)]
        message = mails[0].message
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert FAX_CALLER in str(message["Subject"]) and FAX_CALLER in text
        assert f"Pages: {PAGES}" in text and "Duration: " in text, text
        (attachment,) = message.iter_attachments()
        assert attachment.get_content_type() == "application/pdf"
        received = tmp_path / "received.pdf"
        received.write_bytes(attachment.get_content())

        want = render(original, tmp_path / "want", DPI)
        got = render(received, tmp_path / "got", DPI)
        assert len(want) == PAGES and len(got) == PAGES
        for n, page in enumerate(got):
            own = mean_difference(page, want[n])
            others = [mean_difference(page, w) for k, w in enumerate(want) if k != n]
            print(f"page {n + 1}: mean difference {own:.2f}/255 to its original, "
                  f"{min(others):.2f} to the nearest other page")
            assert own <= MAX_MEAN_DIFFERENCE, own
            assert own < min(others) / 2, (own, others)
    finally:
        smtp.stop()
