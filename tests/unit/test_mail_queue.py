"""The mail queue without a server: queueing once per key, the first spool's files, recovery
after a crash, back-off, the welcome mail's languages and setup link, the SMTP profile's
rules and secrecy, and messages that cannot carry a header injection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from wildix_ast.mail.queue import Attachment, MailQueue, MailQueueError, QueuedMail, enqueue_mail
from wildix_ast.mail.welcome import language_of, queue_welcome, setup_token_valid
from wildix_ast.model.settings_file import dump_site
from wildix_ast.model.site import Site
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.model.users import User
from wildix_ast.services.mail.sender import Backoff
from wildix_ast.services.mail.smtp import message_bytes
from wildix_ast.store.vault import MemoryVault, smtp_password_key, with_secrets

PROFILE = SmtpProfile(sender="pbx@example.com", server="mail.example.com", user="pbx",
                      password="Secret pass 1")


def test_a_key_queues_once_and_a_bad_mail_is_refused(tmp_path: Path) -> None:
    first = enqueue_mail("a@example.com", "s", "b", kind="fraud_alert", key="cdr-1",
                         root=tmp_path)
    assert first == "fraud_alert.cdr-1"
    assert enqueue_mail("a@example.com", "s", "b", kind="fraud_alert", key="cdr-1",
                        root=tmp_path) is None
    queue = MailQueue(tmp_path)
    queue.arm(first)
    queue.committing(first)
    queue.sent(first)
    # sent already: the same key is still not queued again
    assert enqueue_mail("a@example.com", "s", "b", kind="fraud_alert", key="cdr-1",
                        root=tmp_path) is None
    for bad in ("a@example.com>\r\nRCPT TO:<b@c.d", "nobody", ""):
        with pytest.raises(MailQueueError):
            enqueue_mail(bad, "s", "b", kind="test", root=tmp_path)
    with pytest.raises(MailQueueError):
        enqueue_mail("a@example.com", "s", "b", kind="../x", root=tmp_path)
    with pytest.raises(MailQueueError):
        enqueue_mail("a@example.com", "s", "b", kind="test", key="../../etc", root=tmp_path)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o770
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_missed_call_file_of_the_first_spool_is_read(tmp_path: Path) -> None:
    """Messages the FastAGI service spooled before the queue existed go out through it."""
    (tmp_path / "new").mkdir(parents=True)
    (tmp_path / "new" / "1764270000.42-102.json").write_text(json.dumps({
        "to": "bob@example.com", "subject": "Missed call from Alice", "body": "b",
        "kind": "missed_call", "call": {"user": "102"}}))
    queue = MailQueue(tmp_path)
    (ident,) = queue.due(float("inf"))
    mail = queue.load(ident)
    assert (mail.to, mail.kind, mail.details) == ("bob@example.com", "missed_call",
                                                   {"user": "102"})


def test_recovery_resends_what_never_reached_the_dot_and_flags_the_rest(
        tmp_path: Path) -> None:
    queue = MailQueue(tmp_path)
    armed, committed, other_boot = (enqueue_mail("a@example.com", "s", "b", kind="test",
                                                 key=k, root=tmp_path)
                                    for k in ("armed", "committed", "reboot"))
    assert armed and committed and other_boot
    queue.arm(armed)  # killed during the transaction
    queue.arm(committed)
    queue.committing(committed)  # killed after the move, the dot given to the kernel
    queue.arm(other_boot)
    (tmp_path / "intent" / other_boot).write_text("another-boot")  # a power cut
    assert sorted(queue.recover()) == sorted([committed, other_boot])
    statuses = {e.id: (e.status, e.unconfirmed) for e in queue.entries()}
    assert statuses == {armed: ("queued", False), committed: ("sent", True),
                        other_boot: ("sent", True)}
    assert list((tmp_path / "intent").iterdir()) == []
    queue.retry(committed)
    assert {e.id: e.status for e in queue.entries()}[committed] == "queued"


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(retry_base=60, retry_max=3600)
    assert [backoff.delay(n) for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]


def test_a_dropped_message_without_one_valid_recipient_fails_with_its_reason(
        tmp_path: Path) -> None:
    queue = MailQueue(tmp_path)
    drop = tmp_path / "drop" / "new"
    drop.mkdir(parents=True)
    (drop / "1.1").write_bytes(b"To: a@example.com, b@example.com\r\nSubject: x\r\n\r\nhi\r\n")
    (drop / "..hidden").write_bytes(b"To: a@example.com\r\n\r\n")  # not a queue name: left
    assert queue.take_drops() == ["drop.1.1"]
    (entry,) = queue.entries()
    assert entry.status == "failed" and "without one valid To" in (entry.last_error or "")


def test_headers_cannot_carry_a_line_break() -> None:
    mail = QueuedMail(id="x", to="a@example.com", subject="hi\r\nBcc: victim@example.org",
                      body="b", kind="test")
    with pytest.raises(ValueError, match="line break"):
        message_bytes(mail, PROFILE)
    good = message_bytes(QueuedMail(
        id="welcome.1", to="a@example.com", subject="Bienvenue à l'équipe", body="é\n",
        kind="welcome", attachments=(Attachment("a.pdf", "application/pdf", b"%PDF"),)),
        PROFILE)
    assert b"Message-ID: <welcome.1@localhost>" in good
    assert b"From: pbx@example.com" in good and b"=?utf-8?" in good


def test_smtp_profile_rules_and_its_password_never_serialised() -> None:
    assert PROFILE.helo_domain == "localhost" and PROFILE.verify_certificate
    assert "Secret" not in PROFILE.model_dump_json() and "Secret" not in repr(PROFILE)
    with pytest.raises(ValidationError, match="not both"):
        SmtpProfile(sender="a@example.com", server="x", tls=True, starttls=True)
    with pytest.raises(ValidationError, match="needs a user"):
        SmtpProfile(sender="a@example.com", server="x", password="p")
    with pytest.raises(ValidationError):
        SmtpProfile(sender="a@example.com", server="x;rm -rf /")
    with pytest.raises(ValidationError):
        SmtpProfile(sender="a@example.com", server="x", user="u", password="a\nb")
    site = Site(smtp_profiles=[PROFILE])
    vault = MemoryVault()
    with_secrets(site, vault)
    assert vault.secrets[smtp_password_key("default")] == "Secret pass 1"
    assert "Secret" not in dump_site(site, include_secrets=False)
    assert "password: Secret pass 1" in dump_site(site, include_secrets=True)
    stored = Site(smtp_profiles=[PROFILE.model_copy(update={"password": None})])
    assert with_secrets(stored, vault).smtp_profiles[0].password == "Secret pass 1"
    with pytest.raises(ValidationError, match="already defined"):
        Site(smtp_profiles=[PROFILE, PROFILE])


@pytest.mark.parametrize(("language", "subject", "words"), [
    ("fr", "Bienvenue sur acme", "Choisissez votre mot de passe"),
    ("en", "Welcome to acme", "Choose your password"),
    ("it", "Benvenuto su acme", "Scelga la sua password"),
])
def test_welcome_mail_in_the_users_language_with_a_one_time_link(
        tmp_path: Path, language: str, subject: str, words: str) -> None:
    user = User(name="Bob", extension="102", email="bob@example.com", login="bob",
                language=language)
    vault = MemoryVault()
    ident = queue_welcome(user, vault, collaboration_url="https://pbx.example.com/",
                          pbx_name="acme", site_language="fr", root=tmp_path)
    assert ident is not None
    mail = MailQueue(tmp_path).load(ident)
    assert mail.subject == subject and words in mail.body
    assert "https://pbx.example.com\n" in mail.body.replace(" :", ":") or \
        "https://pbx.example.com" in mail.body
    token = mail.body.split("token=")[1].split()[0]
    assert setup_token_valid(vault, "102", token)
    assert not setup_token_valid(vault, "102", token + "x")
    assert token not in json.dumps(vault.secrets)  # only its digest is kept
    assert "bob" in mail.body


def test_welcome_mail_rules(tmp_path: Path) -> None:
    user = User(name="Bob", extension="102", email="bob@example.com", language="de")
    assert language_of(user, "it") == "it" and language_of(user, "de") == "en"
    with_password = queue_welcome(user, MemoryVault(), collaboration_url="https://p.example",
                                  pbx_name="acme", site_language="en",
                                  password="Given-Pass1", root=tmp_path)
    assert with_password is not None
    body = MailQueue(tmp_path).load(with_password).body
    assert "Given-Pass1" in body and "token=" not in body
    with pytest.raises(MailQueueError, match="no email"):
        queue_welcome(User(name="X", extension="103"), MemoryVault(),
                      collaboration_url="https://p.example", pbx_name="a", site_language="en")
    with pytest.raises(MailQueueError, match="collaboration URL"):
        queue_welcome(user, MemoryVault(), collaboration_url="javascript:alert(1)",
                      pbx_name="a", site_language="en", root=tmp_path)
