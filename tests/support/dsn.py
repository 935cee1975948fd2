"""A delivery status notification (RFC 3464) in the shape Postfix's bounce daemon writes,
for the bounce tests."""

from __future__ import annotations


def postfix_dsn(message_id: str, action: str = "failed",
                diagnostic: str = "smtp; 550 5.1.1 <nobody@example.org>: Recipient address "
                "rejected: User unknown in virtual mailbox table") -> bytes:
    """A bounce in the shape Postfix's bounce daemon sends (RFC 3464)."""
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: pbx@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status;\r\n'
        '\tboundary="B1"\r\n\r\n'
        "--B1\r\nContent-Description: Notification\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\nbe delivered.\r\n\r\n"
        "--B1\r\nContent-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Mon,  7 Dec 2026 18:00:00 +0000\r\n"
        "\r\nFinal-Recipient: rfc822; nobody@example.org\r\n"
        "Original-Recipient: rfc822;nobody@example.org\r\n"
        f"Action: {action}\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mail.example.org\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n"
        "--B1\r\nContent-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: pbx@example.com\r\nTo: nobody@example.org\r\nSubject: Fax from +331\r\n"
        f"Message-ID: {message_id}\r\n\r\n--B1--\r\n").encode()
