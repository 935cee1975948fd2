"""The mail queue and its sender against a real SMTP server (aiosmtpd with STARTTLS and AUTH,
started on loopback by the tests): every kind of mail delivered, a server down for a while
delays mails and loses none, a sender killed with SIGKILL mid-run doubles none and loses
none, 4xx deferrals and 5xx failures visible in `mail queue --json`, and `smtp test`'s
clear errors."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import wave
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli_run import assert_no_traceback, run
from support.smtp_server import SmtpServer

from wildix_ast.calls.missed_calls import MailSpool, MissedCall
from wildix_ast.lab.allocator import free_port
from wildix_ast.mail.queue import Attachment, MailQueue, enqueue_mail
from wildix_ast.testing.crash_points import CRASH_ENV

#: the sender's back-off, short for tests: 0.5 s, then 1 s between tries
FAST = ["--retry-base", "0.5", "--retry-max", "1", "--max-attempts", "60", "--timeout", "5"]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Mailer:
    """A store with SMTP profiles for `smtp`, a queue folder, and the verbs run on them."""

    def __init__(self, folder: Path, smtp: SmtpServer) -> None:
        self.folder, self.smtp = folder, smtp
        self.queue_dir = folder / "queue"
        self.env = {"WILDIX_AST_DB": str(folder / "site.sqlite3"),
                    "WILDIX_AST_MAIL_SPOOL": str(self.queue_dir)}
        closed = free_port()
        site: dict[str, Any] = {
            "users": [{"name": "Bob Martin", "extension": "102", "email": "bob@example.com",
                       "language": "fr", "login": "bob"}],
            "smtp_profiles": [
                smtp.profile(),
                smtp.profile(name="untrusted", ca_file=None),
                smtp.profile(name="wrong-password", password="not-the-password"),
                smtp.profile(name="down", port=closed),
            ]}
        (folder / "site.yaml").write_text(yaml.safe_dump(site))
        imported = self.cli("import", str(folder / "site.yaml"))
        assert imported.returncode == 0, imported.stderr
        self.queue = MailQueue(self.queue_dir)

    def cli(self, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        result = run(*args, env={**self.env, **(env or {})})
        assert_no_traceback(result)
        return result

    def sender(self, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "wildix_ast", "mail", "send", "--serve", "--poll", "0.05",
             *FAST, *extra], env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def queue_json(self) -> dict[str, Any]:
        result = self.cli("mail", "queue", "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def enqueue(self, count: int, kind: str = "test") -> list[str]:
        made = [enqueue_mail("bob@example.com", f"mail {n}", f"body {n}\n", kind=kind,
                             root=self.queue_dir) for n in range(count)]
        assert all(made)
        return [m for m in made if m]


@pytest.fixture
def mailer(tmp_path: Path, smtp: SmtpServer) -> Mailer:
    return Mailer(tmp_path, smtp)


def _wait(condition: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def _ids(smtp: SmtpServer) -> Counter[str]:
    return Counter(r.message_id.strip("<>").partition("@")[0] for r in smtp.messages())


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def _wav(seconds: float) -> bytes:
    """8 kHz 16-bit mono silence-with-a-ramp of `seconds` (what voicemail records)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(range(256)) * int(seconds * 8000 * 2 / 256))
    return buffer.getvalue()


def _voicemail_message(to: str, seconds: float) -> bytes:
    """What app_voicemail's mailcmd receives: a whole MIME message with the recording."""
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "acme-paris@localhost"
    message["To"] = f"Bob Martin <{to}>"
    message["Subject"] = "[PBX]: New message 1 in mailbox 102"
    message.set_content("Dear Bob Martin, you have a new message.\n")
    message.add_attachment(_wav(seconds), maintype="audio", subtype="x-wav",
                           filename="msg0000.wav")
    return message.as_bytes()


def test_every_kind_of_mail_is_delivered_once(mailer: Mailer, smtp: SmtpServer) -> None:
    """Missed call (the FastAGI spool), an alert with an attachment (enqueue_mail), a
    voicemail dropped whole by Asterisk's mailcmd, a welcome mail: one pass of the sender
    delivers each once, through STARTTLS and AUTH, From the profile's sender."""
    spool = MailSpool(mailer.queue_dir)
    assert spool.queue_missed_call(MissedCall(
        "1764270000.42", "102", "Bob Martin", "bob@example.com", "+33612345678", "Alice",
        "external", datetime(2026, 11, 27, 20, 5, 1, tzinfo=UTC)))
    assert not spool.queue_missed_call(MissedCall(  # the same call reported again
        "1764270000.42", "102", "Bob Martin", "bob@example.com", "+33612345678", "Alice",
        "external", datetime(2026, 11, 27, 20, 5, 1, tzinfo=UTC)))
    pdf = b"%PDF-1.4 fake\n"
    assert enqueue_mail("admin@example.com", "Fraud alert: 40 calls to +882", "Look.\n",
                        kind="fraud_alert", key="cdr-1234", root=mailer.queue_dir,
                        attachments=[Attachment("calls.pdf", "application/pdf", pdf)])
    assert enqueue_mail("admin@example.com", "again", "", kind="fraud_alert", key="cdr-1234",
                        root=mailer.queue_dir) is None
    drop = mailer.queue_dir / "drop" / "new" / "1764270001.7-102"
    drop.parent.mkdir(parents=True, exist_ok=True)
    drop.write_bytes(_voicemail_message("bob@example.com", 3.0))
    welcome = mailer.cli("user", "welcome", "102", "--url", "https://pbx.example.com")
    assert welcome.returncode == 0, welcome.stderr

    sent = mailer.cli("mail", "send", "--json", *FAST)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 4

    by_kind = {r.message["Subject"]: r for r in smtp.messages()}
    assert len(smtp.messages()) == 4 and all(r.sender == "pbx@example.com"
                                             for r in smtp.messages())
    missed = by_kind["Missed call from Alice (+33612345678)"].message
    assert missed["To"] == "bob@example.com" and missed["From"] == "pbx@example.com"
    assert "2026-11-27 20:05:01 UTC" in missed.get_body().get_content()  # type: ignore[union-attr]
    alert = by_kind["Fraud alert: 40 calls to +882"].message
    (attached,) = alert.iter_attachments()
    assert attached.get_filename() == "calls.pdf" and attached.get_content() == pdf
    voicemail = by_kind["[PBX]: New message 1 in mailbox 102"]
    assert voicemail.recipients == ("bob@example.com",)
    assert voicemail.message["From"] == "pbx@example.com"  # the profile's, not Asterisk's
    (wav,) = voicemail.message.iter_attachments()
    assert wav.get_content() == _wav(3.0)
    welcomes = [r for r in smtp.messages() if "bob" in r.message.get_body()  # type: ignore
                .get_content() and r.message["Subject"].startswith("Bienvenue")]
    assert len(welcomes) == 1
    counts = mailer.queue_json()["counts"]
    assert counts == {"queued": 0, "deferred": 0, "sending": 0, "sent": 4, "failed": 0}


def test_server_down_for_a_while_delays_mails_and_loses_none(mailer: Mailer,
                                                              smtp: SmtpServer) -> None:
    """30 mails queued while the server is down for 8 s: deferred (visible with the last
    error and the next try), then each delivered exactly once after it comes back."""
    smtp.stop()
    queued = mailer.enqueue(30)
    sender = mailer.sender()
    try:
        assert _wait(lambda: mailer.queue.entries(("deferred",)).__len__() == 30, 5)
        listed = mailer.queue_json()
        assert listed["counts"]["deferred"] == 30 and listed["counts"]["sent"] == 0
        one = listed["mails"][0]
        assert "connection refused" in one["last_error"]
        assert one["next_try"] > time.time() - 2 and one["attempts"] >= 1
        time.sleep(6)
        smtp.start()
        assert _wait(lambda: len(smtp.messages()) >= 30, 15), len(smtp.messages())
        time.sleep(0.5)  # a double would come now
    finally:
        _stop(sender)
    assert _ids(smtp) == Counter(queued)  # every one, once
    assert mailer.queue_json()["counts"]["sent"] == 30


@pytest.mark.parametrize("step", ["mail-before-commit", "mail-after-end-of-data",
                                  "mail-after-sent"])
def test_sender_killed_at_each_step_doubles_none_and_loses_none(
        mailer: Mailer, smtp: SmtpServer, step: str) -> None:
    """SIGKILL at a named step of the first mail, then a new sender: each mail once."""
    queued = mailer.enqueue(3)
    killed = mailer.cli("mail", "send", *FAST, env={CRASH_ENV: step})
    assert killed.returncode == -signal.SIGKILL
    again = mailer.cli("mail", "send", "--json", *FAST)
    assert again.returncode == 0, again.stderr
    assert _ids(smtp) == Counter(queued)
    listed = mailer.queue_json()
    assert listed["counts"]["sent"] == 3
    unconfirmed = [m["id"] for m in listed["mails"] if m["unconfirmed"]]
    # only a sender killed between the server's 250 and the durable mark leaves one
    assert len(unconfirmed) == (1 if step == "mail-after-end-of-data" else 0)


def test_sender_killed_inside_the_window_is_reported_not_doubled(mailer: Mailer,
                                                                  smtp: SmtpServer) -> None:
    """The one window the queue cannot close: killed after recording `sending` and before
    the end of data left. The mail is not sent twice; it shows as sent *unconfirmed* in
    `mail queue`, and `mail retry` sends it."""
    (ident,) = mailer.enqueue(1)
    killed = mailer.cli("mail", "send", *FAST, env={CRASH_ENV: "mail-committed"})
    assert killed.returncode == -signal.SIGKILL
    assert mailer.cli("mail", "send", *FAST).returncode == 0
    assert smtp.messages() == []
    (entry,) = mailer.queue_json()["mails"]
    assert entry["status"] == "sent" and entry["unconfirmed"]
    assert mailer.cli("mail", "retry", ident).returncode == 0
    assert mailer.cli("mail", "send", *FAST).returncode == 0
    assert _ids(smtp) == Counter([ident])


TOTAL = 3000
"""Enough that six kills land while mails go out on a quiet machine too: the sender does
600-1,000 mails/s there, and the six waits before the kills add up to 1.25 s."""


def test_sender_sigkilled_mid_run_doubles_none_and_loses_none(mailer: Mailer,
                                                               smtp: SmtpServer) -> None:
    """3,000 mails; the serving sender is killed with SIGKILL 6 times at random moments and
    started again: none arrives twice, none is lost silently. A kill inside the window
    (between the move to `sending/` and the server's handling of the end of data) leaves
    that one mail flagged *unconfirmed*; retried by hand, every mail has arrived once."""
    queued = mailer.enqueue(TOTAL)
    rng = random.Random(20)
    kills, progress = 0, []
    for _ in range(6):
        sender = mailer.sender()
        before = len(smtp.messages())
        # once it sends (a process starts in a second or more on a busy machine)
        assert _wait(lambda: len(smtp.messages()) > before, 20)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.3))
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=10)
        kills += 1
        progress.append(len(smtp.messages()))
    # the kills landed while mails were going out, not before the first or after the last
    assert all(0 < done < TOTAL for done in progress), progress
    sender = mailer.sender()
    try:
        assert _wait(lambda: not mailer.queue.entries(("queued", "deferred")), 60)
    finally:
        _stop(sender)
    received = _ids(smtp)
    assert [i for i, n in received.items() if n > 1] == []  # 0 duplicates
    listed = mailer.queue_json()
    unconfirmed = {m["id"] for m in listed["mails"] if m["unconfirmed"]}
    lost = set(queued) - set(received)
    assert lost <= unconfirmed  # nothing lost silently: each one flagged in `mail queue`
    # A kill between the move to sending/ and the server's handling of the final `.` is the
    # window (aiosmtpd drops a transaction whose client closed before it processed the
    # `.`): at most one mail per kill, flagged, and `mail retry` sends it.
    assert len(lost) <= kills
    print(f"{kills} kills, {len(unconfirmed)} unconfirmed, {len(lost)} not delivered")
    for ident in lost:
        assert mailer.cli("mail", "retry", ident).returncode == 0
    assert mailer.cli("mail", "send", *FAST).returncode == 0
    assert _ids(smtp) == Counter(queued)  # every mail once, none twice
    assert mailer.queue_json()["counts"]["sent"] == TOTAL and kills == 6


def test_4xx_is_deferred_and_5xx_failed_visible_in_queue_json(mailer: Mailer,
                                                               smtp: SmtpServer) -> None:
    ok = enqueue_mail("bob@example.com", "ok", "", kind="test", root=mailer.queue_dir)
    later = enqueue_mail("defer-me@example.com", "later", "", kind="test",
                         root=mailer.queue_dir)
    never = enqueue_mail("reject-me@example.com", "never", "", kind="test",
                         root=mailer.queue_dir)
    before = time.time()
    sent = mailer.cli("mail", "send", "--json", "--retry-base", "60")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) | {"errors": []} == {
        "ok": True, "sent": 1, "deferred": 1, "failed": 1, "recovered": 0, "errors": []}
    mails = {m["id"]: m for m in mailer.queue_json()["mails"]}
    assert mails[ok]["status"] == "sent"
    deferred = mails[later]
    assert deferred["status"] == "deferred" and deferred["attempts"] == 1
    assert "451" in deferred["last_error"] and before + 55 < deferred["next_try"] < time.time() + 61
    failed = mails[never]
    assert failed["status"] == "failed" and "550" in failed["last_error"]
    human = mailer.cli("mail", "queue")
    assert "deferred" in human.stdout and "failed" in human.stdout
    assert len(smtp.messages()) == 1


def test_smtp_test_gives_clear_messages_and_exit_codes(mailer: Mailer,
                                                       smtp: SmtpServer) -> None:
    good = mailer.cli("smtp", "test", "default", "--to", "bob@example.com")
    assert good.returncode == 0, good.stderr
    assert len(smtp.messages()) == 1
    cases = {
        "down": (11, "connection refused"),
        "untrusted": (12, "certificate is not trusted"),
        "wrong-password": (13, "refused user 'pbx@example.com': 535"),
    }
    for profile, (code, words) in cases.items():
        result = mailer.cli("smtp", "test", profile, "--to", "bob@example.com",
                            "--timeout", "5")
        assert (result.returncode, words in result.stderr) == (code, True), result.stderr
    rejected = mailer.cli("smtp", "test", "default", "--to", "reject-x@example.com")
    assert rejected.returncode == 14 and "550" in rejected.stderr
    unknown = mailer.cli("smtp", "test", "nope", "--to", "bob@example.com")
    assert unknown.returncode == 2 and "known: default, down" in unknown.stderr
    bad = mailer.cli("smtp", "test", "default", "--to", "bob@example.com\r\nRCPT TO:<x@y.z>")
    assert bad.returncode == 2 and "not an email address" in bad.stderr
    # the password is never printed: not by export (without --with-secrets), not in errors
    exported = mailer.cli("export")
    assert "s3cret" not in exported.stdout and "not-the-password" not in exported.stdout
    assert base64.b64encode(b"s3cret").decode() not in exported.stdout


def test_a_dropped_message_goes_to_users_only(mailer: Mailer, smtp: SmtpServer) -> None:
    """Whoever can write Asterisk's drop folder cannot use the PBX as a relay: a message
    to an address no user has fails with the reason, and nothing is sent."""
    drop = mailer.folder / "asterisk-drop"
    for sub in ("tmp", "new"):
        (drop / sub).mkdir(parents=True)
    (drop / "new" / "1764270002.9").write_bytes(_voicemail_message("victim@example.org", 1))
    (drop / "new" / "1764270002.10").write_bytes(_voicemail_message("BOB@example.com", 1))
    sent = mailer.cli("mail", "send", "--json", "--drop", str(drop), *FAST)
    assert sent.returncode == 0, sent.stderr
    assert [r.recipients for r in smtp.messages()] == [("BOB@example.com",)]
    (failed,) = [
        m for m in mailer.queue_json()["mails"] if m["status"] == "failed"]
    assert "victim@example.org, not a user's address" in failed["last_error"]
    assert list((drop / "new").iterdir()) == []
