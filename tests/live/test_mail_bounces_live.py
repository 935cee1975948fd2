"""Bounces (issue 20, the mail queue's "a bounce ... logged and visible"): a mail the SMTP
server accepted comes back later as a DSN in the sender's mailbox; `wildix-ast mail
bounces` reads that mailbox on a real IMAP server (Debian's dovecot, IMAPS on loopback)
and `mail queue --json` then shows the mail failed with the bounce reason. A person's mail
in the same mailbox is left unread; reading again changes nothing."""

from __future__ import annotations

import imaplib
import json
import ssl
from pathlib import Path

from support.cli_run import assert_no_traceback, run
from support.dsn import postfix_dsn
from support.imap_server import PASSWORD as IMAP_PASSWORD
from support.imap_server import USER as IMAP_USER
from support.imap_server import ImapServer
from support.smtp_server import SmtpServer

from wildix_ast.mail.queue import enqueue_mail
from wildix_ast.model.site import Site
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.store import open_store
from wildix_ast.store.vault import with_secrets


def test_a_bounce_in_the_mailbox_marks_the_sent_mail_failed_with_its_reason(
        tmp_path: Path) -> None:
    smtp = SmtpServer(tmp_path)
    smtp.start()
    imap = ImapServer(tmp_path, smtp.cert, smtp.key)
    imap.start()
    try:
        profile = SmtpProfile(**smtp.profile(bounce_imap="127.0.0.1",
                                             bounce_imap_port=imap.port))
        assert profile.user == IMAP_USER and profile.password is not None
        site = Site.model_validate({"smtp_profiles": [profile]})
        db = str(tmp_path / "store.sqlite3")
        with open_store(db) as store:
            store.import_site(site)
            with_secrets(site, store)
        queue = str(tmp_path / "queue")
        ident = enqueue_mail("nobody@example.org", "Fax from +331: 1 page", "body",
                             kind="fax_in", key="fax-1.1-0", root=Path(queue))
        sent = run("mail", "send", "--json", "--queue", queue, "--db", db)
        assert sent.returncode == 0, sent.stderr
        (accepted,) = smtp.messages()
        message_id = accepted.message_id
        assert message_id == f"<{ident}@pbx.example.com>"

        imap.deliver(b"From: colleague@example.com\r\nTo: pbx@example.com\r\n"
                     b"Subject: lunch?\r\nMessage-ID: <x1@example.com>\r\n\r\nnoon?\r\n")
        imap.deliver(postfix_dsn(message_id))
        found = run("mail", "bounces", "--json", "--queue", queue, "--db", db)
        assert_no_traceback(found)
        assert found.returncode == 0, found.stdout + found.stderr
        rounds = json.loads(found.stdout)["profiles"]["default"]
        assert rounds["read"] == 2 and [b["id"] for b in rounds["bounced"]] == [ident]

        listed = run("mail", "queue", "--json", "--queue", queue)
        (mail,) = json.loads(listed.stdout)["mails"]
        assert mail["status"] == "failed", mail
        assert mail["last_error"].startswith("bounced: 5.1.1") and \
            "User unknown" in mail["last_error"], mail

        again = run("mail", "bounces", "--json", "--queue", queue, "--db", db)
        assert json.loads(again.stdout)["profiles"]["default"] == {
            "read": 1, "errors": [], "bounced": []}  # the DSN is read; the person's mail not
        context = ssl.create_default_context(cafile=str(smtp.cert))
        with imaplib.IMAP4_SSL("127.0.0.1", imap.port, ssl_context=context) as client:
            client.login(IMAP_USER, IMAP_PASSWORD)
            client.select("INBOX", readonly=True)
            _, unseen = client.search(None, "UNSEEN")
            assert len(unseen[0].split()) == 1  # the colleague's mail is still unread
    finally:
        imap.stop()
        smtp.stop()
