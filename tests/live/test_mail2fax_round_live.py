"""Issue 20, must-show 1 joined end to end: a 10-page PDF mailed to the Mail2Fax mailbox (a
real dovecot) leaves the site as a fax call through its trunk, crosses the media relay (40
ms jitter, no loss) to the carrier (a second, plain lab Asterisk), which routes it back to
the fax user's DID over the same trunk; the site receives it (Fax2Mail), `fax collect`
mails it to a real SMTP server, and the mailed PDF's 10 pages equal the original's
rendering — over G.711 (trunk `faxg711`) and over T.38 (trunk `faxt38`).

    mail -> dovecot -> `fax poll` -> job -> dialer -> Local -> routing procedure (as the
    sender's ACL group) -> trunk -> relay -> carrier -> relay -> trunk -> wildix-did ->
    ReceiveFAX -> `fax collect` -> SMTP

The lab's routing procedure `faxout` (the Mail2Fax profile's) sends the national form of
the fax DID (`0140000190`) to the G.711 carrier and the E.164 form (`+33140000190`) to the
T.38 carrier: one site, both transports, the same DID. The carrier dials the number it got
back to the endpoint it came from. The relay counts UDPTL datagrams: the T.38 round trip
must carry its pages as UDPTL, the G.711 one none.

The pixel comparison is tests/live/test_fax_sip_live.py's: rendered at 50 dpi to 8-bit grey,
each page differs from its original by a mean of at most 8/255 and by less than half its
difference from any other original page.

Sent faxes in the call history (issue 20 item 3): each sent fax is a record of `cdr list
--json` (`fax: sent`, status, pages, remote station, a reference to the PDF that was sent,
kept owner-only).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run
from support.dovecot_server import DovecotServer
from support.fax_pages import assert_same_pages, make_pdf, render
from support.fax_sip import FaxLine, fax_line
from support.smtp_server import SmtpServer
from unit.test_mail2fax import BRUNO, PROTECTION, mail

from wildix_ast.model.fax_server import FaxServer
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.procedures import Procedure
from wildix_ast.model.site import Site
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.services.fax.dialer import ConsoleLine, Dialer, DialSettings
from wildix_ast.services.fax.documents import document_path
from wildix_ast.services.fax.jobs import JobSpool
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets

PAGES = 10
DPI = 50
MAX_MEAN_DIFFERENCE = 8.0
FAX_USER_EMAIL = "compta@acme.fr"
#: the number written in the mail's subject, per transport (procedure `faxout` routes them)
NUMBERS = {"g711": "0140000190", "t38": "+33140000190"}
CARRIER = """\
[from-site]
; the carrier: a call from the site goes back to the site, over the trunk it came in by
exten => _+X.,1,Dial(PJSIP/${EXTEN}@${CHANNEL(endpoint)},30)
 same => n,Hangup()
"""
CARRIER_MODULES = ("app_dial.so", "func_channel.so")


def _faxout() -> Procedure:
    def route(number: str, trunk: str, correct: list[dict[str, object]]) -> dict[str, object]:
        return {"number": number, "applications": [
            {"app": "set_call_class", "call_class": "national"}, *correct,
            {"app": "dial_trunk", "trunk": trunk}, {"app": "hangup", "cause": 34}]}

    return Procedure.model_validate({"name": "faxout", "numbers": [
        route(NUMBERS["g711"], "faxg711",
              [{"app": "correct_called_number", "remove": 1, "prepend": "+33"}]),
        route(NUMBERS["t38"], "faxt38", [])]})


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[SmtpServer, DovecotServer]]:
    smtp = SmtpServer(tmp_path_factory.mktemp("smtp"))
    smtp.start()
    dovecot = DovecotServer()
    dovecot.start()
    try:
        yield smtp, dovecot
    finally:
        dovecot.close()
        smtp.stop()


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory,
         servers: tuple[SmtpServer, DovecotServer]) -> Iterator[FaxLine]:
    smtp, dovecot = servers

    def changes(site: Site) -> Site:
        dialplan = site.dialplan.model_copy(update={
            "procedures": [*site.dialplan.procedures, _faxout()]})
        return site.model_copy(update={
            "dialplan": dialplan,
            "smtp_profiles": [SmtpProfile(**smtp.profile())],
            "fax_server": FaxServer(copy_address=None),
            "mail2fax_profiles": [Mail2FaxProfile.model_validate(
                {**dovecot.profile(), "protection_password": PROTECTION,
                 "procedure": "faxout"})]})

    with fax_line(tmp_path_factory.mktemp("faxround"), loss=0.0, jitter=0.040,
                  carrier_dialplan=CARRIER, carrier_modules=CARRIER_MODULES,
                  site_changes=changes) as running:
        yield running


def test_a_10_page_pdf_mailed_to_mail2fax_comes_back_by_fax2mail_as_the_same_10_pages(
        line: FaxLine, servers: tuple[SmtpServer, DovecotServer], tmp_path: Path) -> None:
    smtp, dovecot = servers
    site = line.site.compiled.site
    db = str(tmp_path / "m2f.sqlite3")
    with open_store(db) as store:
        store.import_site(site)
        with_secrets(site, store)
    lab = line.site.lab
    out = lab.host_path(lab.paths.fax_out_spool)
    for sub in ("send", "tmp", "done"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    line.clear()
    for relay in line.relays.values():
        relay.reset_stats()
    queue = tmp_path / "queue"
    documents = tmp_path / "documents"
    common = ("--db", db, "--queue", str(queue))
    original = make_pdf(tmp_path / "original.pdf", PAGES)
    since = time.time()

    # One mail per transport, each polled into its own job spool: a dialer sends one job
    # at a time, so two dialers (one per spool) fax both at once and the test stays short
    # (about 2 x 105 s one after the other).
    keys: dict[str, str] = {}
    for fax, number in NUMBERS.items():
        dovecot.append(mail(BRUNO, f"{number} {PROTECTION}",
                            [("invoice.pdf", "application/pdf", original.read_bytes())]))
        polled = run("fax", "poll", "--json", "--jobs", str(tmp_path / f"jobs-{fax}"),
                     *common)
        assert_no_traceback(polled)
        assert polled.returncode == 0, polled.stderr
        (taken,) = json.loads(polled.stdout)["mails"]
        assert taken["state"] == "queued", taken
        keys[fax] = taken["key"]
    assert dovecot.inbox() == []

    async def send(fax: str) -> None:
        # the dialer's own retries (a product behaviour, shortened to 1 s); the T.38 job
        # must still go through at its first try (asserted below)
        spool = JobSpool(tmp_path / f"jobs-{fax}")
        async with line.site.console() as console:
            dialer = Dialer(spool, ConsoleLine(console), out, site,
                            DialSettings(attempts=3, retry_base=1.0), (), queue,
                            documents=documents)
            while True:
                await dialer.send_due()
                job = spool.get(keys[fax])
                if job is None or job.final:
                    return
                await asyncio.sleep(1.0)

    async def send_both() -> None:
        # both at once: each fax half must wait for its own dialled half's bridge before
        # SendFAX, or T.38 is refused (docs/fax.md, "The T.38 switch through the dialer's
        # Local channel")
        await asyncio.gather(send("t38"), send("g711"))

    started = time.monotonic()
    messages = line.site.lab.log_dir / "messages.log"
    log_start = messages.stat().st_size
    asyncio.run(send_both())
    elapsed = time.monotonic() - started
    retried = 0  # tries that failed before the job's last one
    for fax in NUMBERS:
        job = JobSpool(tmp_path / f"jobs-{fax}").get(keys[fax])
        assert job is not None
        retried += job.attempts - 1
        udptl = line.relays[fax].totals()[("udptl", "forwarded")]
        print(f"{fax}: {job.state} after {job.attempts} tries, {job.reason}; UDPTL datagrams "
              f"through the relay: {udptl}")
        assert job.state == "sent", (job.reason, job.result)
        assert job.result.get("pages") == str(PAGES), job.result
        # the T.38 round trip carried its pages as UDPTL (not a fall-back to audio)
        assert (udptl > 0) == (fax == "t38"), udptl
        if fax == "t38":  # the switch to T.38 was not refused, no try was lost to it
            assert job.attempts == 1, job.history
    print(f"two {PAGES}-page faxes sent and received at once in {elapsed:.0f} s")
    # neither the site's ReceiveFAX nor its SendFAX refused or timed out a T.38 switch
    # (res_fax.c's warnings, in the site's messages log)
    with messages.open("rb") as log:
        log.seek(log_start)
        logged = log.read().decode(errors="replace")
    refusals = [entry for entry in logged.splitlines()
                if "negotiat" in entry and "T.38" in entry]
    assert refusals == [], refusals

    records = [path.read_text() for path in (line.spool / "new").glob("*.job")]
    received_ok = [r for r in records if "status=SUCCESS\n" in r]
    assert len(received_ok) == 2, records   # the site received both, from its DID
    assert len(records) - len(received_ok) <= retried, records  # a failed try's reception
    for record in records:
        assert "did=+33140000190\n" in record, record
    for record in received_ok:
        assert f"pages={PAGES}\n" in record, record
    collected = run("fax", "collect", "--json", "--spool", str(line.spool),
                    "--documents", str(documents), *common)
    assert_no_traceback(collected)
    assert collected.returncode == 0, collected.stderr
    sent = run("mail", "send", "--json", *common)
    assert_no_traceback(sent)
    assert sent.returncode == 0, sent.stderr
    mails = smtp.messages()
    # a failed try's reception is mailed too (nothing silently dropped), without pages
    faxes = [m for m in mails if m.recipients == (FAX_USER_EMAIL,)
             and any(True for _ in m.message.iter_attachments())]
    reports = [m for m in mails if m.recipients == (BRUNO,)]  # one per job, at its end
    assert len(faxes) == 2 and len(reports) == 2, [(m.recipients, str(m.message["Subject"]))
                                                   for m in mails]
    for report in reports:
        body = report.message.get_body(("plain",))
        assert body is not None and f"Pages: {PAGES} of {PAGES}" in body.get_content()

    want = render(original, tmp_path / "want", DPI)
    assert len(want) == PAGES
    for n, received_mail in enumerate(faxes):
        (attachment,) = received_mail.message.iter_attachments()
        received = tmp_path / f"received-{n}.pdf"
        received.write_bytes(attachment.get_content())
        assert_same_pages(received, want, tmp_path / f"got-{n}", DPI, MAX_MEAN_DIFFERENCE,
                          f"fax {n + 1}")
    _sent_faxes_are_in_the_call_history(line, tmp_path, db, documents, since, retried)


def _sent_faxes_are_in_the_call_history(line: FaxLine, tmp_path: Path, db: str,
                                        documents: Path, since: float, retried: int) -> None:
    spool = str(tmp_path / "cdr-spool.sqlite3")
    for _ in range(2):
        passed = run("cdr", "collect", "--once", "--log-dir", str(line.site.lab.log_dir),
                     "--spool", spool, "--brake-dir", str(tmp_path / "brake"), "--db", db)
        assert passed.returncode == 0, passed.stderr
        time.sleep(1.0)
    listed = run("cdr", "list", "--json", "--db", db)
    assert listed.returncode == 0, listed.stderr
    calls = [c for c in json.loads(listed.stdout)["calls"] if c["start"] >= since]
    for call in calls:
        print({k: call[k] for k in ("call_id", "caller_user", "caller_number",
                                    "callee_user", "callee_number", "direction", "fax",
                                    "fax_status", "fax_pages", "fax_remote",
                                    "fax_document", "duration")})
    # each try is a record; a failed try's (at most `retried` each way) is FAILED
    sent = [c for c in calls if c["fax"] == "sent" and c["fax_status"] == "SUCCESS"]
    received = [c for c in calls if c["fax"] == "received" and c["fax_status"] == "SUCCESS"]
    assert len(sent) == 2 and len(received) == 2, calls
    failed = [c for c in calls if c["fax"] and c["fax_status"] != "SUCCESS"]
    assert len(failed) <= 2 * retried, failed
    for fax in sent:
        assert (fax["fax_status"], fax["fax_pages"]) == ("SUCCESS", PAGES), fax
        assert fax["caller_user"] == "102", fax
        assert fax["callee_number"] == "+33140000190", fax
        assert fax["duration"] > 30, fax
        assert fax["fax_document"].startswith("102/"), fax
        document = document_path(documents, fax["fax_document"])
        assert document.read_bytes().startswith(b"%PDF-")
        assert document.stat().st_mode & 0o777 == 0o600
