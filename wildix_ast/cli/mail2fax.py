"""`wildix-ast fax poll | send | jobs`: Mail2Fax (wildix_ast.services.fax.outbound and
dialer): mails of the Mail2Fax mailboxes become fax jobs, fax jobs become fax calls, and
`fax jobs` shows them. Registered on the `fax` group by cli/fax.py."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import DbUrl, JsonOutput
from wildix_ast.cli.mail import QueueDir
from wildix_ast.errors import FaxError, MailError, SettingsError, WildixError
from wildix_ast.services.fax.jobs import JOBS_ENV, STATES, JobSpool

log = logging.getLogger(__name__)

JobsDir = Annotated[Path | None, typer.Option(
    "--jobs", envvar=JOBS_ENV, show_envvar=True,
    help="The fax job spool. Default: ~/.local/share/wildix-ast/fax-jobs.")]
OutSpool = Annotated[Path | None, typer.Option(
    "--out-spool", envvar="WILDIX_AST_FAX_OUT_SPOOL", show_envvar=True,
    help="Asterisk's Mail2Fax spool (<astspooldir>/wildix-fax-out) as this host sees it; "
         "default: the --lab's, else /var/spool/asterisk/wildix-fax-out.")]
SentDocuments = Annotated[Path | None, typer.Option(
    "--documents", envvar="WILDIX_AST_FAX_DOCUMENTS", show_envvar=True,
    help="Where the PDF of each fax sent is kept for the call history (the fax "
         "documents folder). Default: ~/.local/share/wildix-ast/fax-documents.")]
LabName = Annotated[str | None, typer.Option(
    "--lab", help="Send through this lab instance (its console and spool).",
    show_default=False)]


def _site_and_profiles(db: str | None, only: list[str] | None) -> tuple[Any, list[Any]]:
    from wildix_ast.store import open_store
    from wildix_ast.store.mail2fax import profiles_with_secrets

    with open_store(db) as store:
        if not store.has_site():
            raise SettingsError("the store holds no site yet: run `wildix-ast import SITE`")
        site = store.export_site()
        profiles = profiles_with_secrets(store, site)
    if only:
        unknown = sorted(set(only) - {p.name for p in profiles})
        if unknown:
            raise SettingsError(f"--profile {', '.join(unknown)}: no such Mail2Fax profile "
                                f"({', '.join(p.name for p in profiles) or 'none defined'})")
        profiles = [p for p in profiles if p.name in only]
    return site, profiles


def _poll_once(site: Any, profiles: list[Any], spool: JobSpool, queue: Path | None
               ) -> tuple[list[Any], list[MailError]]:
    from wildix_ast.services.fax.outbound import poll

    copies = [site.fax_server.copy_address] if site.fax_server.copy_address else []
    polled: list[Any] = []
    errors: list[MailError] = []
    for profile in profiles:
        try:
            polled += poll(profile, site, spool, copy_to=copies, queue_root=queue)
        except MailError as e:  # logged, and the next profile is still read
            log.error("Mail2Fax %s: %s", profile.name, e.message)
            errors.append(type(e)(f"{profile.name}: {e.message}"))
    return polled, errors


def _dialer(site: Any, spool: JobSpool, lab: str | None, out_spool: Path | None,
            queue: Path | None, retry_base: float, attempts: int,
            documents: Path | None = None) -> tuple[Any, Any]:
    from wildix_ast.apply.pipeline import Target
    from wildix_ast.lab.instance import running_lab
    from wildix_ast.services.fax.dialer import Dialer, DialSettings
    from wildix_ast.services.fax.documents import default_documents

    if lab is not None:
        running = running_lab(lab)
        target = running.target()
        folder = out_spool or running.host_path(running.paths.fax_out_spool)
    else:
        target = Target.host()
        folder = out_spool or Path("/var/spool/asterisk/wildix-fax-out")
    if not (folder / "send").is_dir() or not (folder / "done").is_dir():
        raise FaxError(f"{folder}: no send/ and done/ folders: not Asterisk's Mail2Fax spool "
                       "(apply the site first)")
    copies = (site.fax_server.copy_address,) if site.fax_server.copy_address else ()
    settings = DialSettings(attempts=attempts, retry_base=retry_base)
    kept = documents or default_documents()
    return target, lambda line: Dialer(spool, line, folder, site, settings, copies, queue,
                                       documents=kept)


def _send_once(target: Any, make: Any) -> list[Any]:
    from wildix_ast.errors import AmiError
    from wildix_ast.services.fax.dialer import ConsoleLine

    async def go() -> list[Any]:
        async with target.console() as console:
            return list(await make(ConsoleLine(console)).send_due())

    try:
        return asyncio.run(go())
    except AmiError as e:
        raise FaxError(f"fax send: {e.message}") from None


def _print(polled: list[Any], sent: list[Any], errors: list[str], as_json: bool) -> None:
    """What a pass did, as JSON or one line per mail and job."""
    if as_json:
        emit_json({"ok": not errors, "mails": [p.__dict__ for p in polled],
                   "jobs": [{"key": j.key, "state": j.state, "number": j.number,
                             "reason": j.reason} for j in sent], "errors": errors})
        return
    for p in polled:
        out.print(f"mail {p.key[:12]} ({p.profile}): {p.state}"
                  + (f" — {escape(p.reason)}" if p.reason else "")
                  + ("" if p.new else " (taken before)"))
    for j in sent:
        out.print(f"job {j.key[:12]} to {j.number}: {j.state} — {escape(j.reason)}")
    for error in errors:
        out.print(f"[red]{escape(error)}[/]")


def poll_verb(
    profile: Annotated[list[str] | None, typer.Option(
        "--profile", help="Only this Mail2Fax profile (repeat).")] = None,
    jobs_dir: JobsDir = None,
    queue_dir: QueueDir = None,
    db: DbUrl = None,
    send: Annotated[bool, typer.Option("--send", help="Also send the jobs due (`fax "
                                       "send`).")] = False,
    lab: LabName = None,
    out_spool: OutSpool = None,
    serve: Annotated[bool, typer.Option("--serve", help="Keep running: poll (and with "
                                        "--send, send) every --interval seconds until "
                                        "SIGTERM.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 30.0,
    retry_base: Annotated[float, typer.Option(min=0.1, help="First retry delay (s), "
                                              "doubled each try.")] = 60.0,
    attempts: Annotated[int, typer.Option(min=1, help="Tries before a fax fails.")] = 3,
    as_json: JsonOutput = False,
) -> None:
    """Mail2Fax: each waiting mail of the Mail2Fax mailboxes becomes a fax job (or a
    refusal reported to its sender), exactly once. Exit 11/12/13 when a mailbox cannot be
    read (one pass)."""
    mode.json = as_json
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    site, profiles = _site_and_profiles(db, profile)
    if not profiles:
        raise SettingsError("no Mail2Fax profile: add one to mail2fax_profiles")
    spool = JobSpool(jobs_dir)
    dialer = _dialer(site, spool, lab, out_spool, queue_dir, retry_base, attempts) \
        if send else None
    if not serve:
        polled, failures = _poll_once(site, profiles, spool, queue_dir)
        sent = _send_once(*dialer) if dialer else []
        _print(polled, sent, [e.message for e in failures], as_json)
        if failures:  # the first failure's kind gives the exit code (11, 12 or 13)
            raise type(failures[0])("; ".join(e.message for e in failures))
        return

    def one_pass() -> None:
        polled, failures = _poll_once(site, profiles, spool, queue_dir)
        errors = [e.message for e in failures]
        try:
            sent = _send_once(*dialer) if dialer else []
        except WildixError as e:
            errors.append(e.message)
            sent = []
        if polled or sent or errors:
            _print(polled, sent, errors, as_json)

    _serve(one_pass, interval)


def _serve(one_pass: Callable[[], None], interval: float) -> None:
    """`one_pass` every `interval` seconds until SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        started = time.monotonic()
        one_pass()
        stop.wait(max(interval - (time.monotonic() - started), 0.0))


def send_verb(
    jobs_dir: JobsDir = None,
    queue_dir: QueueDir = None,
    db: DbUrl = None,
    lab: LabName = None,
    out_spool: OutSpool = None,
    documents: SentDocuments = None,
    serve: Annotated[bool, typer.Option("--serve", help="Keep running: send the jobs due "
                                        "every --interval seconds until SIGTERM (the "
                                        "dialer's unit).")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between passes.")] = 10.0,
    retry_base: Annotated[float, typer.Option(min=0.1, help="First retry delay (s), "
                                              "doubled each try.")] = 60.0,
    attempts: Annotated[int, typer.Option(min=1, help="Tries before a fax fails.")] = 3,
    as_json: JsonOutput = False,
) -> None:
    """Mail2Fax: place the fax calls of the jobs due (after recovering interrupted ones),
    one at a time, each job checked again first (its number, its pages); a report mail for
    each fax sent or failed for good. The only Mail2Fax part that uses Asterisk's console."""
    mode.json = as_json
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    site, _ = _site_and_profiles(db, None)
    spool = JobSpool(jobs_dir)
    if not serve:
        sent = _send_once(*_dialer(site, spool, lab, out_spool, queue_dir, retry_base,
                                   attempts, documents))
        _print([], sent, [], as_json)
        return

    def one_pass() -> None:
        try:  # the settings again at each pass: users, groups, procedures may change
            current, _ = _site_and_profiles(db, None)
            sent = _send_once(*_dialer(current, spool, lab, out_spool, queue_dir, retry_base,
                                       attempts, documents))
        except WildixError as e:
            _print([], [], [e.message], as_json)
            return
        if sent:
            _print([], sent, [], as_json)

    _serve(one_pass, interval)


def jobs_verb(
    jobs_dir: JobsDir = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", help=f"Only these: {', '.join(STATES)} (repeat).")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Mail2Fax's jobs: queued (next try), being sent, sent (pages, duration), failed and
    refused (the reason)."""
    mode.json = as_json
    wanted = tuple(state or STATES)
    unknown = sorted(set(wanted) - set(STATES))
    if unknown:
        raise SettingsError(f"--state {', '.join(unknown)}: not one of {', '.join(STATES)}")
    jobs = [j for j in JobSpool(jobs_dir).jobs() if j.state in wanted]
    if as_json:
        emit_json({"ok": True, "counts": {s: sum(j.state == s for j in jobs) for s in wanted},
                   "jobs": [j.to_json() for j in jobs]})
        return
    if not jobs:
        out.print("no fax job")
        return
    table = Table("job", "state", "from", "to", "pages", "tries", "reason")
    for j in jobs:
        table.add_row(j.key[:12], j.state, escape(j.sender or "-"), j.number or "-",
                      str(j.pages), str(j.attempts), escape(j.reason or "-"))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("poll")(poll_verb)
    app.command("send")(send_verb)
    app.command("jobs")(jobs_verb)
