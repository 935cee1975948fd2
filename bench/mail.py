"""Mails handled per second by the mail queue's sender, with the failure count.

    .venv/bin/python bench/mail.py [--mails 2000] [--rounds 3] [--down 60] [--down-mails 200]

1. Throughput: the same aiosmtpd server (STARTTLS + AUTH, on loopback, in this process)
   receives `--mails` mails from smtplib on one connection (the baseline: the raw SMTP cost,
   nothing durable) and `--mails` mails queued with `enqueue_mail` and sent by one pass of
   the sender (`Sender.run_once`: one connection, each mail read from the queue, its end of
   data recorded durably before the `.`, moved to `sent/` after the 250). Printed per round:
   mails/s of each, the ratio, and the sender's failures (failed + still queued) and the
   server's duplicates. Queueing itself (`enqueue_mail`, fsync'd) is timed apart.
2. Unless `--down 0`: the issue's outage: `--down-mails` mails queued, the SMTP server down
   for `--down` seconds while `wildix-ast mail send --serve` runs (retries 2 s doubling to
   8 s), then up again. Printed: delivered, duplicates, lost, and how long after the server
   came back the last mail arrived.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from support.smtp_server import PASSWORD, USER, SmtpServer

from wildix_ast.mail.queue import MailQueue, enqueue_mail
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.services.mail.sender import Backoff, Sender

console = Console()


def _ids(server: SmtpServer) -> Counter[str]:
    return Counter(r.message_id.strip("<>").partition("@")[0] for r in server.messages())


def baseline(server: SmtpServer, mails: int, round_: int) -> float:
    """Mails/s from smtplib on one STARTTLS + AUTH connection (not durable)."""
    context = ssl.create_default_context(cafile=str(server.cert))
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="bench") as smtp:
        smtp.starttls(context=context)
        smtp.login(USER, PASSWORD)
        for n in range(mails):
            smtp.sendmail("pbx@example.com", ["bob@example.com"],
                          f"Subject: baseline {n}\r\nMessage-ID: <b{round_}.{n}@bench>\r\n\r\n"
                          f"body {n}\r\n".encode())
    return mails / (time.perf_counter() - started)


def sender_round(server: SmtpServer, folder: Path, mails: int) -> dict[str, float]:
    queue_dir = folder / "queue"
    started = time.perf_counter()
    queued = [enqueue_mail("bob@example.com", f"mail {n}", f"body {n}\n", kind="bench",
                           root=queue_dir) for n in range(mails)]
    enqueue_rate = mails / (time.perf_counter() - started)
    profile = SmtpProfile(**server.profile())
    queue = MailQueue(queue_dir)
    sender = Sender(queue, lambda: {"default": profile}, Backoff(timeout=10))
    before = len(server.messages())
    started = time.perf_counter()
    with queue.serving():
        counts = sender.run_once()
    elapsed = time.perf_counter() - started
    received = _ids(server)
    left = len(queue.entries(("queued", "deferred", "failed")))
    return {"rate": counts.sent / elapsed, "enqueue_rate": enqueue_rate,
            "failures": counts.failed + left,
            "duplicates": sum(n - 1 for i, n in received.items() if n > 1),
            "missing": sum(1 for i in queued if i and received[i] == 0),
            "received": len(server.messages()) - before}


def outage(folder: Path, down: float, mails: int) -> None:
    server = SmtpServer(folder)
    queue_dir = folder / "queue"
    queued = [enqueue_mail("bob@example.com", f"mail {n}", "body\n", kind="outage",
                           root=queue_dir) for n in range(mails)]
    import yaml

    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"users": [{"name": "Bob", "extension": "102",
                                               "email": "bob@example.com"}],
                                    "smtp_profiles": [server.profile()]}))
    env = {**os.environ, "WILDIX_AST_DB": str(folder / "site.sqlite3"),
           "WILDIX_AST_MAIL_SPOOL": str(queue_dir)}
    subprocess.run([sys.executable, "-m", "wildix_ast", "import", str(site)], env=env,
                   check=True, capture_output=True)
    sender = subprocess.Popen([sys.executable, "-m", "wildix_ast", "mail", "send", "--serve",
                               "--poll", "0.2", "--retry-base", "2", "--retry-max", "8",
                               "--timeout", "5"], env=env, stdout=subprocess.DEVNULL)
    try:
        time.sleep(down)
        deferred = len(MailQueue(queue_dir).entries(("deferred",)))
        server.start()
        back = time.monotonic()
        while len(server.messages()) < mails and time.monotonic() - back < 120:
            time.sleep(0.05)
        last = time.monotonic() - back
        time.sleep(2)  # a duplicate would come now
    finally:
        sender.terminate()
        sender.wait(timeout=30)
        server.stop()
    received = _ids(server)
    table = Table(title=f"SMTP server down for {down:g} s ({mails} mails queued)")
    for column in ("deferred while down", "delivered", "duplicates", "lost",
                   "last mail after the server came back"):
        table.add_column(column, justify="right")
    table.add_row(str(deferred), str(len(received)),
                  str(sum(n - 1 for n in received.values() if n > 1)),
                  str(sum(1 for i in queued if i and received[i] == 0)), f"{last:.1f} s")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down", type=float, default=60.0)
    parser.add_argument("--down-mails", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wildix-ast-bench-mail-") as tmp:
        work = Path(tmp)
        server = SmtpServer(work)
        server.start()
        table = Table(title=f"mail sender, {args.mails} mails a round (STARTTLS + AUTH, "
                            "loopback aiosmtpd)")
        for column in ("round", "smtplib mails/s", "sender mails/s", "ratio",
                       "enqueue mails/s", "failures", "duplicates", "missing"):
            table.add_column(column, justify="right")
        try:
            for round_ in range(1, args.rounds + 1):
                raw = baseline(server, args.mails, round_)
                got = sender_round(server, work / f"round{round_}", args.mails)
                table.add_row(str(round_), f"{raw:,.0f}", f"{got['rate']:,.0f}",
                              f"{got['rate'] / raw:.2f}", f"{got['enqueue_rate']:,.0f}",
                              str(int(got["failures"])), str(int(got["duplicates"])),
                              str(int(got["missing"])))
        finally:
            server.stop()
        console.print(table)
        if args.down > 0:
            (work / "outage").mkdir()
            outage(work / "outage", args.down, args.down_mails)


if __name__ == "__main__":
    main()
