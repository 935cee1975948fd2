"""Bounces (wildix_ast.mail.bounces, MailQueue.bounced): a DSN as Postfix writes it marks the
mail it names failed with the reason, once; anything that is not a failure report about a
mail of the queue (a delayed notice, a reply, a forged Message-ID) marks nothing."""

from __future__ import annotations

from pathlib import Path

from support.dsn import postfix_dsn

from wildix_ast.mail.bounces import parse_bounce
from wildix_ast.mail.queue import MailQueue, enqueue_mail


def _sent(root: Path) -> tuple[MailQueue, str]:
    ident = enqueue_mail("nobody@example.org", "Fax from +331", "body", kind="fax_in",
                         key="fax-1.1-0", root=root)
    assert ident is not None
    queue = MailQueue(root)
    queue.arm(ident)
    queue.committing(ident)
    queue.sent(ident)
    return queue, ident


def test_a_postfix_bounce_marks_its_mail_failed_with_the_reason_once(tmp_path: Path) -> None:
    queue, ident = _sent(tmp_path / "queue")
    bounce = parse_bounce(postfix_dsn(f"<{ident}@pbx.example.com>"))
    assert bounce is not None
    assert (bounce.queue_id, bounce.recipient) == (ident, "nobody@example.org")
    assert bounce.reason.startswith("5.1.1 550 5.1.1") and "User unknown" in bounce.reason
    assert queue.bounced(bounce.queue_id, bounce.reason)
    assert not queue.bounced(bounce.queue_id, bounce.reason)  # the same DSN read again
    (entry,) = queue.entries()
    assert entry.status == "failed" and entry.last_error is not None
    assert entry.last_error.startswith("bounced: 5.1.1") and queue.has_failed(ident)


def test_what_is_not_a_failure_report_of_ours_marks_nothing(tmp_path: Path) -> None:
    queue, ident = _sent(tmp_path / "queue")
    mine = f"<{ident}@pbx.example.com>"
    assert parse_bounce(postfix_dsn(mine, action="delayed")) is None
    assert parse_bounce(b"From: a@b.c\r\nSubject: Re: fax\r\n\r\nthanks\r\n") is None
    no_report = postfix_dsn(mine).replace(b"multipart/report", b"multipart/mixed")
    assert parse_bounce(no_report) is None
    for forged in ("<../../etc/passwd@x>", "<a b@x>", "<@x>"):
        found = parse_bounce(postfix_dsn(forged))
        assert found is None or not queue.bounced(found.queue_id, found.reason)
    # a line break or a control character in the diagnostic never reaches the queue's state
    odd = parse_bounce(postfix_dsn(mine, diagnostic="smtp; 550 no\x1b[2J"))
    assert odd is not None and "\x1b" not in odd.reason
    assert [e.status for e in queue.entries()] == ["sent"]
