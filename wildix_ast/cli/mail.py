"""`wildix-ast mail send|queue|retry` and `wildix-ast smtp test`: the PBX's outgoing mail
queue and its sender (wildix_ast.mail.queue, wildix_ast.services.mail), and a profile's check
(WMS Client SMTP -> Test)."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import DbUrl, JsonOutput
from wildix_ast.errors import SettingsError
from wildix_ast.mail.queue import SPOOL_ENV, STATUSES, MailQueue, QueuedMail, default_root

app = typer.Typer(help="The outgoing mail queue: every mail the PBX sends.",
                  no_args_is_help=True)
smtp_app = typer.Typer(help="SMTP profiles (WMS Client SMTP).", no_args_is_help=True)

QueueDir = Annotated[Path | None, typer.Option(
    "--queue", envvar=SPOOL_ENV, show_envvar=True,
    help="The mail queue folder. Default: ~/.local/share/wildix-ast/mail-spool.")]


@app.command("send")
def send(
    queue_dir: QueueDir = None,
    db: DbUrl = None,
    serve: Annotated[bool, typer.Option("--serve", help="Keep running: a pass every "
                                        "--poll seconds until SIGTERM.")] = False,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between passes.")] = 1.0,
    retry_base: Annotated[float, typer.Option(
        min=0.1, help="First retry delay in seconds; doubled on each try.")] = 60.0,
    retry_max: Annotated[float, typer.Option(min=0.1, help="Longest retry delay.")] = 3600.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="Tries before a mail fails.")] = 12,
    timeout: Annotated[float, typer.Option(min=0.5, help="SMTP timeout in seconds.")] = 30.0,
    drop: Annotated[list[Path] | None, typer.Option(
        "--drop", envvar="WILDIX_AST_MAIL_DROP", show_envvar=True,
        help="A folder Asterisk's voicemail drops messages in (<astspooldir>/wildix-mail); "
             "repeat. Its messages go to users' addresses only.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Send the queued mails (one pass, or --serve); deferred ones wait their next try."""
    from wildix_ast.services.mail.sender import Backoff, Counts, Sender
    from wildix_ast.store import open_store
    from wildix_ast.store.mail import stored_profiles, user_addresses

    mode.json = as_json
    queue = MailQueue(queue_dir or default_root())
    backoff = Backoff(retry_base, retry_max, max_attempts, timeout)
    with open_store(db) as store:
        sender = Sender(queue, lambda: stored_profiles(store), backoff, drops=drop or (),
                        addresses=lambda: user_addresses(store))

        def report(counts: Counts) -> None:
            data = {"sent": counts.sent, "deferred": counts.deferred, "failed": counts.failed,
                    "recovered": counts.recovered, "errors": sorted(set(counts.errors))}
            if as_json:
                emit_json({"ok": True, **data})
            else:
                out.print(f"sent {counts.sent}, deferred {counts.deferred}, failed "
                          f"{counts.failed}" + (f", recovered {counts.recovered}"
                                                if counts.recovered else ""))
                for error in sorted(set(counts.errors)):
                    out.print(f"  {escape(error)}")

        if serve:
            def keep_days() -> int:
                return store.export_site().mail_queue.keep_days if store.has_site() else 30

            sender.keep_days = keep_days
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            sender.serve(stop, poll, report)
            return
        with queue.serving():
            report(sender.run_once())


@app.command("queue")
def queue_(
    queue_dir: QueueDir = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", help=f"Only these: {', '.join(STATUSES)} (repeat the option).")] = None,
    as_json: JsonOutput = False,
) -> None:
    """The mails queued, deferred (next try, last error), being sent, sent and failed."""
    mode.json = as_json
    wanted = tuple(status or STATUSES)
    unknown = sorted(set(wanted) - set(STATUSES))
    if unknown:
        raise SettingsError(f"--status {', '.join(unknown)}: not one of {', '.join(STATUSES)}")
    entries = MailQueue(queue_dir or default_root()).entries(wanted)
    if as_json:
        emit_json({"ok": True, "counts": {s: sum(e.status == s for e in entries)
                                          for s in wanted},
                   "mails": [e.__dict__ for e in entries]})
        return
    table = Table(title="mail queue", show_edge=False)
    for column in ("id", "status", "kind", "to", "tries", "next try / done", "last error"):
        table.add_column(column)

    def when(moment: float | None) -> str:
        return dt.datetime.fromtimestamp(moment).strftime("%F %T") if moment else ""

    for e in entries:
        table.add_row(escape(e.id), e.status + (" (unconfirmed)" if e.unconfirmed else ""),
                      e.kind, escape(e.to), str(e.attempts),
                      when(e.next_try if e.status == "deferred" else e.finished_at),
                      escape(e.last_error or ""))
    out.print(table)


@app.command("bounces")
def bounces(queue_dir: QueueDir = None, db: DbUrl = None,
            as_json: JsonOutput = False) -> None:
    """Read the bounce mailboxes of the SMTP profiles (`bounce_imap`) now and mark each
    bounced mail failed with its reason (the serving sender does it every 5 minutes)."""
    from wildix_ast.errors import MailError
    from wildix_ast.services.mail.bounce_reader import read_bounces
    from wildix_ast.store import open_store
    from wildix_ast.store.mail import stored_profiles

    mode.json = as_json
    queue = MailQueue(queue_dir or default_root())
    with open_store(db) as store:
        profiles = [p for p in stored_profiles(store).values() if p.bounce_imap is not None]
    if not profiles:
        raise SettingsError("no SMTP profile has a bounce_imap server")
    rounds = {p.name: read_bounces(p, queue) for p in profiles}
    errors = [e for r in rounds.values() for e in r.errors]
    if errors:  # what was marked before the error stays marked (`mail queue` shows it)
        raise MailError("; ".join(errors))
    if as_json:
        emit_json({"ok": True, "profiles": {
            name: {"read": r.read, "errors": r.errors,
                   "bounced": [{"id": b.queue_id, "to": b.recipient, "reason": b.reason}
                               for b in r.bounced]} for name, r in rounds.items()}})
    else:
        for name, found in rounds.items():
            out.print(f"{escape(name)}: {found.read} message(s) read, "
                      f"{len(found.bounced)} bounced mail(s) marked failed")
            for bounce in found.bounced:
                out.print(f"  {bounce.queue_id} to {escape(bounce.recipient)}: "
                          f"{escape(bounce.reason)}")


@app.command("retry")
def retry(ident: Annotated[str, typer.Argument(help="The mail's id (`mail queue`).")],
          queue_dir: QueueDir = None, as_json: JsonOutput = False) -> None:
    """Queue a failed (or unconfirmed) mail again; the next pass sends it."""
    mode.json = as_json
    MailQueue(queue_dir or default_root()).retry(ident)
    if as_json:
        emit_json({"ok": True, "id": ident})
    else:
        out.print(f"[green]✓[/] {escape(ident)} queued again")


@smtp_app.command("test")
def smtp_test(
    profile: Annotated[str, typer.Argument(help="The SMTP profile's name.")],
    to: Annotated[str, typer.Option("--to", help="Where the test mail goes.")],
    db: DbUrl = None,
    timeout: Annotated[float, typer.Option(min=0.5, help="SMTP timeout in seconds.")] = 15.0,
    as_json: JsonOutput = False,
) -> None:
    """Connect, log in and send one test mail now (not through the queue). Exit 10: server
    unreachable, 11: TLS, 12: login refused, 13: mail refused (5xx)."""
    from wildix_ast.mail.queue import valid_address
    from wildix_ast.services.mail.smtp import SmtpSession
    from wildix_ast.store import open_store
    from wildix_ast.store.mail import stored_profiles

    mode.json = as_json
    if not valid_address(to):
        raise SettingsError(f"--to {to!r} is not an email address")
    with open_store(db) as store:
        profiles = stored_profiles(store)
    found = profiles.get(profile)
    if found is None:
        known = ", ".join(sorted(profiles)) or "none"
        raise SettingsError(f"no SMTP profile {profile!r} in the store (known: {known})")
    session = SmtpSession(found, timeout)
    try:
        session.send(QueuedMail(
            id=f"smtp-test.{int(dt.datetime.now(dt.UTC).timestamp() * 1000)}", to=to,
            subject=f"wildix-ast: test of SMTP profile {profile}",
            body=f"This mail tests the SMTP profile {profile!r} ({found.server}:"
                 f"{found.port}).\n", kind="smtp_test"))
    finally:
        session.close()
    if as_json:
        emit_json({"ok": True, "profile": profile, "to": to, "server": found.server,
                   "port": found.port})
    else:
        out.print(f"[green]✓[/] profile {escape(profile)}: test mail to {escape(to)} "
                  f"accepted by {found.server}:{found.port}")
