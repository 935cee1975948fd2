"""The `wildix-ast` command."""

from __future__ import annotations

import gc

# Importing the CLI makes tens of thousands of objects, none of them garbage: without the
# collector's passes over them meanwhile (restored below for whoever imports this module;
# the short-lived verbs then turn it off: `_short_lived`).
_COLLECTING = gc.isenabled()
gc.disable()

import atexit  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402

# pydantic looks for plugins in every installed distribution's entry points when the first
# model is built (importlib.metadata: 0.03-0.05 s of every command); wildix-ast uses none.
# Set it yourself to have yours loaded.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Any  # noqa: E402

import typer  # noqa: E402

from wildix_ast import __version__  # noqa: E402
from wildix_ast.cli.console import (  # noqa: E402
    emit_json,
    err,
    mode,
    out,
    progress,
    report_error,
)
from wildix_ast.errors import SettingsError, WildixError  # noqa: E402

# The settings model (pydantic: 0.2 s of building its validators) loads in the verbs that
# read a site, within their `load` phase: `--help`, `password`, `history` go without it.
from wildix_ast.model.passwords import (  # noqa: E402
    GENERATED_LENGTH,
    MIN_LENGTH,
    generate_password,
    password_problems,
)

if TYPE_CHECKING:
    from rich.table import Table

    from wildix_ast.apply import Plan
    from wildix_ast.apply.pipeline import ApplyOutcome, Target
    from wildix_ast.apply.timing import Phases
    from wildix_ast.lab.instance import Lab
    from wildix_ast.model.site import Site
    from wildix_ast.store import Store

app = typer.Typer(
    name="wildix-ast",
    help="The Wildix WMS administration model on a plain Asterisk 22.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
password_app = typer.Typer(help="Generate or check passwords against the WMS policy.",
                           no_args_is_help=True)
app.add_typer(password_app, name="password")

SiteFile = Annotated[Path, typer.Argument(help="The settings file (YAML).", show_default=False)]
DbUrl = Annotated[str | None, typer.Option(
    "--db", envvar="WILDIX_AST_DB", show_envvar=True,
    help="Store: a SQLite file path or a database URL (postgresql+psycopg2://..., "
         "mysql+pymysql://...). Default: ~/.local/share/wildix-ast/wildix-ast.sqlite3.")]
TemplatesDir = Annotated[Path | None, typer.Option(
    "--templates", envvar="WILDIX_AST_TEMPLATE_OVERRIDES", show_envvar=True,
    help="A folder of templates that override the built-in ones, file by file.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"wildix-ast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version,
                                                is_eager=True, help="Print the version.")]
          = False) -> None:
    """The Wildix WMS administration model on a plain Asterisk 22."""


JsonOutput = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object on standard output (errors too), for scripts and "
    "the Ansible role; messages for people go to standard error.")]


def _short_lived() -> None:
    """For a command that ends within seconds: no cyclic garbage collection. Its passes walk
    every object of a large site again and again (0.5 s of CPU in an apply of 10,000 users,
    0.12 s in a render, with the same peak memory without them); the process returns its
    memory at exit."""
    gc.disable()


SHORT_LIVED = frozenset({"validate", "import", "export", "render", "apply", "rollback"})
"""The verbs that call `_short_lived` (services and the lab keep the collector)."""


def _json(enabled: bool) -> bool:
    mode.json = enabled
    return enabled


@app.command()
def validate(site_file: SiteFile, as_json: JsonOutput = False) -> None:
    """Check a settings file; list every problem with its location."""
    _short_lived()
    _json(as_json)
    from wildix_ast.model.settings_file import load_site

    site = load_site(site_file)
    if site.sounds:
        from wildix_ast.model.settings_file import locator
        from wildix_ast.sounds.audio import check_files

        check_files(site, site_file.resolve().parent, locator(site_file))
    phones = sum(1 for u in site.users if u.type.has_phone)
    if as_json:
        emit_json({"ok": True, "problems": [], "users": len(site.users), "phones": phones,
                   "groups": len(site.groups), "pbx_name": site.system.pbx_name,
                   # where the dialplan asks the FastAGI service: a deployment starts the
                   # service there (the Ansible role's unit), never on a port of its own
                   "fastagi": {"host": str(site.system.fastagi.host),
                               "port": site.system.fastagi.port},
                   # a deployment runs Mail2Fax's poller and dialer only when there is one
                   "mail2fax_profiles": len(site.mail2fax_profiles),
                   # the role runs the provisioning server only for a site that set its
                   # address (without it the server refuses to start)
                   "provisioning": {
                       "enabled": site.provisioning.address is not None,
                       "address": site.provisioning.address,
                       "port": site.provisioning.port,
                       "https": not site.provisioning.allow_http}})
        return
    out.print(f"[green]✓[/] {site_file}: valid — {len(site.users)} users ({phones} with a "
              f"phone), {len(site.groups)} groups, PBX {site.system.pbx_name!r}")


@password_app.command("generate")
def password_generate(
    length: Annotated[int, typer.Option(min=MIN_LENGTH, max=128, help="Length.")]
    = GENERATED_LENGTH,
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many.")] = 1,
) -> None:
    """Print strong passwords that satisfy the WMS policy."""
    for _ in range(count):
        print(generate_password(length))


@password_app.command("check")
def password_check() -> None:
    """Check a password read from standard input (never from the command line)."""
    candidate = sys.stdin.readline().rstrip("\n")
    problems = password_problems(candidate)
    if problems:
        raise WildixError("the password breaks the policy: " + "; ".join(problems))
    out.print("[green]✓[/] the password satisfies the policy")


@app.command("import")
def import_(site_file: SiteFile, db: DbUrl = None) -> None:
    """Validate a settings file and store it (one transaction: all or nothing)."""
    _short_lived()
    from wildix_ast.apply.pipeline import site_sounds
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.store import open_store
    from wildix_ast.store.directory import with_directory_users
    from wildix_ast.store.vault import with_secrets

    site = load_site(site_file)
    text = site_file.read_text(encoding="utf-8")
    with open_store(db) as store:
        # the company directory's users stay: the directory sync manages them
        site = with_directory_users(store, site)
        report = store.import_site(site, source_text=text,
                                   sounds=site_sounds(site, site_file, store))
        # New users get their SIP and WEB passwords now, so every later view agrees.
        with_secrets(site, store)
        from wildix_ast.store.devices import unassign_missing_users

        unassign_missing_users(store)  # a removed user's phones are theirs no more
    out.print(f"[green]✓[/] imported {site_file}: {report}")


@app.command("export")
def export(
    db: DbUrl = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                                "instead of standard output.")] = None,
    secrets: Annotated[bool, typer.Option("--with-secrets/--without-secrets",
                                          help="Include SIP and WEB passwords.")] = False,
) -> None:
    """Print the stored site as a settings file."""
    _short_lived()
    from wildix_ast.model.settings_file import dump_site
    from wildix_ast.store import open_store
    from wildix_ast.store.vault import with_secrets

    with open_store(db) as store:
        if not store.has_site():
            raise WildixError("the store holds no site yet: run `wildix-ast import SITE` first")
        site = store.export_site()
        if secrets:
            site = with_secrets(site, store)
    text = dump_site(site, include_secrets=secrets)
    if output is None:
        sys.stdout.write(text)
    else:
        from wildix_ast.files import write_atomic

        # passwords inside: owner-only; without them, the usual 0644 of a settings file
        write_atomic(output, text, mode=0o600 if secrets else 0o644)
        out.print(f"[green]✓[/] wrote {output}")


LabName = Annotated[str | None, typer.Option(
    "--lab", help="Target the lab instance of this name instead of this host's Asterisk "
    "(`--lab default` or just `--lab`).", show_default=False)]


def _lab(name: str) -> Lab:
    from wildix_ast.lab.instance import Lab

    lab = Lab(name, _lab_state_dir())
    if not lab.is_running():
        raise WildixError(f"lab {name!r} is not running: start it with `wildix-ast lab up`")
    return lab


def _lab_state_dir() -> Path | None:
    value = os.environ.get("WILDIX_AST_LAB_STATE")
    return Path(value) if value else None


def _target(lab_name: str | None, etc_dir: Path, data_dir: Path | None = None) -> Target:
    from wildix_ast.apply.pipeline import Target

    return _lab(lab_name).target() if lab_name else Target.host(etc_dir, data_dir)


@app.command()
def render(
    site_file: SiteFile,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")],
    templates: TemplatesDir = None,
    db: DbUrl = None,
) -> None:
    """Render the Asterisk configuration files of a settings file into a folder."""
    _short_lived()
    from wildix_ast.apply.pipeline import render_to_folder
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.store import open_store

    site = load_site(site_file)
    with open_store(db) as store:
        written = render_to_folder(site, store, out_dir, templates=templates)
    out.print(f"[green]✓[/] wrote {len(written)} files into {out_dir}")


def _table(title: str) -> Table:
    # rich.table loads only for a verb that prints one (render and validate do not)
    from rich.table import Table

    return Table(title=title, show_edge=False)


def _show_plan(change: Plan) -> None:
    touched = change.touched
    if not change.has_changes:
        out.print(f"[green]no changes[/]: the {len(change.changes)} files Asterisk runs are "
                  "up to date")
    elif not touched:
        out.print(f"configuration files unchanged; {len(change.sound_files)} sound files change")
    else:
        table = _table("plan")
        table.add_column("file")
        table.add_column("change")
        colours = {"add": "green", "change": "yellow", "remove": "red"}
        for c in touched:
            table.add_row(c.name, f"[{colours[c.kind]}]{c.kind}[/]")
        out.print(table)
        unchanged = len(change.changes) - len(touched)
        out.print(f"[dim]{unchanged} other files unchanged[/]")
    if change.drifted:
        out.print(f"[yellow]edited by hand since the last apply (overwritten):[/] "
                  f"{', '.join(change.drifted)}")
    diff = change.diff()
    if diff:
        from rich.syntax import Syntax

        out.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    reloads = change.modules_to_reload()
    if reloads:
        out.print("reloads: " + ", ".join(r.cli for r in reloads))
    for reason in change.restart_reasons():
        out.print(f"[yellow]restart needed:[/] {reason}")


EtcDir = Annotated[Path, typer.Option(
    "--etc", help="The Asterisk configuration folder of this host (without --lab).")]
DataDir = Annotated[Path, typer.Option(
    "--data", help="Asterisk's data folder on this host (without --lab): the site's "
    "sound files go under it.")]
LockTimeout = Annotated[float, typer.Option(
    "--lock-timeout", min=0, help="Seconds to wait for another apply or rollback on the "
    "same target before giving up (exit 8).")]


@app.command()
def apply(
    site_file: SiteFile,
    lab: LabName = None,
    etc_dir: EtcDir = Path("/etc/asterisk"),
    dry_run: Annotated[bool, typer.Option("--dry-run", "--check", help="Show the plan "
                                          "(a diff) and stop.")] = False,
    restart: Annotated[bool, typer.Option(help="Allow a restart when a change needs one "
                                          "(transports, modules).")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Write the files without contacting Asterisk (it is stopped, or "
        "does not have our AMI account yet: a first install); restart it afterwards.")]
    = False,
    lock_timeout: LockTimeout = 120.0,
    templates: TemplatesDir = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
    data_dir: DataDir = Path("/usr/share/asterisk"),
    timing: Annotated[bool, typer.Option(
        "--timing", "-v", help="Print where the time went, phase by phase (standard "
        "error); --json always carries it (`timing`).")] = False,
) -> None:
    """Render, show the plan, write, reload, verify through AMI; roll back on failure.

    Only the modules whose files changed are reloaded, and only what changed is verified.
    One apply at a time per target; the store is updated once Asterisk has taken the new
    configuration, and each configuration that went live is kept as a generation."""
    from wildix_ast.apply.timing import Phases

    phases = Phases()
    _short_lived()
    _json(as_json)
    if dry_run:
        from wildix_ast.cache import read_only

        read_only()  # a dry run writes nothing anywhere, not even a cache
    with phases.phase("load"):
        from wildix_ast.model.settings_file import load_site

        site = load_site(site_file)
        text = site_file.read_text(encoding="utf-8")
    with phases.phase("imports"):
        from wildix_ast.apply.pipeline import apply_site, site_sounds
        from wildix_ast.store import open_store, open_store_for_plan
    with phases.phase("open"):
        target = _target(lab, etc_dir, data_dir)
        store = open_store_for_plan(db) if dry_run else open_store(db)
    with store:
        from wildix_ast.store.directory import with_directory_users

        with phases.phase("sounds"):
            site = with_directory_users(store, site)  # the directory sync manages its users
            sounds = site_sounds(site, site_file, store)
        outcome = apply_site(site, store, target, source_text=text, templates=templates,
                             sounds=sounds, dry_run=dry_run, offline=offline,
                             allow_restart=restart, lock_timeout=lock_timeout,
                             progress=_apply_progress,
                             show_plan=None if as_json else _show_plan, phases=phases)
        if not outcome.dry_run:
            with phases.phase("devices"):
                from wildix_ast.store.devices import unassign_missing_users

                unassign_missing_users(store)  # a removed user's phones are theirs no more
        with phases.phase("devices"):
            store.close()
    with phases.phase("output"):
        if as_json:  # (the timing in it counts the output made so far)
            emit_json(outcome.to_json())
            return
        _print_applied(outcome, target)
    if timing:
        _print_timing(phases)


def _print_timing(phases: Phases) -> None:
    """Where an apply's time went, as a table on standard error."""
    table = _table(f"where the time went ({phases.total():.2f} s from the process's start)")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    table.add_column("cpu s", justify="right")
    table.add_column("what")
    total = phases.total()
    for name, seconds, what in phases.rows():
        cpu = phases.cpu.get(name)
        table.add_row(name, f"{seconds:.3f}", f"{100 * seconds / total:.0f} %",
                      "" if cpu is None else f"{cpu:.3f}", what)
    for name, seconds in phases.overlapped.items():
        table.add_row(f"({name})", f"{seconds:.3f}", "", "", "in a thread during the "
                      "reload: not added")
    err.print(table)


def _print_applied(outcome: ApplyOutcome, target: Target) -> None:
    if outcome.recovered:
        out.print(f"[yellow]recovered:[/] {outcome.recovered}")
    if outcome.interrupted:
        out.print(f"[yellow]warning:[/] {outcome.interrupted}")
    if outcome.dry_run:
        out.print("[dim]dry run: nothing written[/]")
        return
    generation = (f"generation {outcome.generation.number}" if outcome.generation
                  else "no new generation")
    if outcome.offline:
        out.print(f"[green]✓[/] wrote {len(outcome.plan.touched)} files to {target.name} "
                  f"without contacting Asterisk ({generation}); restart Asterisk to load "
                  f"them; store: {outcome.store}")
        return
    report = outcome.report
    assert report is not None
    reloaded = ", ".join(r.cli for r in report.reloads) or "nothing to reload"
    out.print(f"[green]✓[/] applied to {target.name} in {report.total_seconds:.2f} s: "
              f"{len(report.files_written)} files and {len(report.sounds_written)} sound files "
              f"written, {reloaded}; verified in "
              f"{report.verify_seconds:.2f} s; {generation}; store: {outcome.store}")
    if report.logged_for_nodes:
        out.print(f"{report.logged_for_nodes} cached objects logged for the other nodes' "
                  "followers (`wildix-ast realtime follow`, docs/scaling.md)")


@app.command()
def rollback(
    lab: LabName = None,
    etc_dir: EtcDir = Path("/etc/asterisk"),
    to: Annotated[int | None, typer.Option(
        "--to", help="The generation to restore (default: the one before the newest; "
        "see `wildix-ast history`).")] = None,
    lock_timeout: LockTimeout = 120.0,
    db: DbUrl = None,
    as_json: JsonOutput = False,
    data_dir: DataDir = Path("/usr/share/asterisk"),
) -> None:
    """Restore an earlier generation (its configuration and sound files), reload, verify,
    and record it (the store goes back to the site that generation came from)."""
    from wildix_ast.apply.pipeline import rollback_target
    from wildix_ast.store import open_store

    _short_lived()
    _json(as_json)
    target = _target(lab, etc_dir, data_dir)
    with open_store(db) as store:
        outcome = rollback_target(store, target, to=to, lock_timeout=lock_timeout,
                                  progress=_apply_progress,
                                  show_plan=None if as_json else _show_plan)
        from wildix_ast.store.devices import unassign_missing_users

        unassign_missing_users(store)  # a removed user's phones are theirs no more
    if as_json:
        emit_json(outcome.to_json())
        return
    generation = outcome.report.generation
    out.print(f"[green]✓[/] generation {outcome.restored} restored on {target.name} and "
              f"verified" + (f" (recorded as generation {generation.number})"
                             if generation else ""))


@app.command()
def history(
    lab: LabName = None,
    etc_dir: EtcDir = Path("/etc/asterisk"),
    as_json: JsonOutput = False,
) -> None:
    """The configurations kept for a target (newest last): when, how, which files, and the
    store revision each came from."""
    from wildix_ast.apply.pipeline import config_target

    _json(as_json)
    target = _target(lab, etc_dir)
    config = config_target(target, None)
    generations = config.history()
    journal = config.interrupted()
    interrupted = (None if journal is None else
                   f"an apply was interrupted at step '{journal.step}' (pid {journal.pid}, "
                   f"{journal.started_at}); the next apply or rollback finishes or undoes it")
    if as_json:
        emit_json({"ok": True, "target": target.name, "interrupted": interrupted,
                   "generations": [g.to_json() for g in generations]})
        return
    if not generations:
        out.print(f"no generation kept for {target.name} yet")
    else:
        table = _table(f"generations of {target.name}")
        for column in ("#", "applied at", "kind", "files", "sound files", "store revision"):
            table.add_column(column)
        for g in generations:
            kind = g.kind + (f" of {g.from_generation}" if g.from_generation else "")
            table.add_row(str(g.number), g.applied_at, kind, str(len(g.files)),
                          "not kept" if g.sounds is None else str(len(g.sounds)),
                          "" if g.store_revision is None else str(g.store_revision))
        out.print(table)
    if interrupted:
        out.print(f"[yellow]warning:[/] {interrupted}")


def _apply_progress(step: str, message: str) -> None:
    progress(f"{step}: {message}")


def _configure_lab(lab: Lab) -> None:
    """`lab up` renders the stored site for the lab."""
    from wildix_ast.apply.pipeline import install_stored_site
    from wildix_ast.store import open_store

    with open_store(os.environ.get("WILDIX_AST_DB")) as store:
        install_stored_site(store, lab.target())


def call(
    caller: Annotated[str, typer.Argument(help="Extension that calls.")],
    callee: Annotated[str, typer.Argument(help="Extension or feature code called "
                                          "(e.g. *43, the echo test).")],
    lab: LabName = "default",
    hold: Annotated[float, typer.Option(help="Seconds the call stays up.")] = 2.0,
    db: DbUrl = None,
) -> None:
    """Place a real SIP test call in the lab (to a user, or a feature code like *43).

    SIPp plays the phones with the users' stored SIP passwords; the callee (or Asterisk,
    for a feature code) answers, the call is held, hung up and checked; no channel may be
    left on Asterisk."""
    from wildix_ast.lab.testcall import test_call
    from wildix_ast.store import open_store

    assert lab is not None

    with open_store(db) as store:
        result = test_call(_lab(lab), _stored_site(store), store, caller, callee, hold=hold)
    table = _table(f"test call {caller} → {callee}")
    table.add_column("step")
    table.add_column("result")
    for step, ok, detail in result.steps:
        table.add_row(step, ("[green]✓[/] " if ok else "[red]✗[/] ") + detail)
    out.print(table)
    if not result.ok:
        raise WildixError(f"the test call {caller} → {callee} failed: {result.summary}")
    out.print(f"[green]✓[/] call {caller} → {callee} connected and hung up cleanly "
              f"({result.summary})")


def _stored_site(store: Store) -> Site:
    from wildix_ast.apply.pipeline import stored_site

    return stored_site(store)


@app.command("call", hidden=True)
@functools.wraps(call)
def call_deprecated(*args: Any, **kwargs: Any) -> None:
    """`wildix-ast call`: the earlier name of `lab call`, kept for one release."""
    err.print("[yellow]`wildix-ast call` is deprecated and goes in the next release: use "
              "`wildix-ast lab call`[/]")
    call(*args, **kwargs)


def _mount_lab() -> None:
    from wildix_ast.cli import lab as lab_cli

    lab_cli.set_configurator(_configure_lab)
    # a real SIP call between two lab phones; WMS "Générer un appel" is `test-call`
    lab_cli.app.command("call")(call)
    app.add_typer(lab_cli.app, name="lab")


def _mount_services() -> None:
    from wildix_ast.cli import agi as agi_cli
    from wildix_ast.cli import live as verbs
    from wildix_ast.cli import runtime as runtime_cli

    app.add_typer(agi_cli.app, name="agi")
    app.add_typer(runtime_cli.app, name="runtime")
    app.command("status")(verbs.status)
    app.command("test-call")(verbs.test_call)
    app.add_typer(verbs.security_app, name="security")
    # the earlier spelling, kept for scripts
    runtime_cli.app.command("bans", hidden=True)(verbs.bans)
    runtime_cli.app.command("unban", hidden=True)(verbs.unban)

    from wildix_ast.cli import cdr as cdr_cli
    from wildix_ast.cli import realtime as realtime_cli
    from wildix_ast.cli import users as preferences_cli
    from wildix_ast.cli import voicemail as voicemail_logins_cli

    app.add_typer(preferences_cli.app, name="user")
    app.add_typer(preferences_cli.users_app, name="users")

    from wildix_ast.cli import directory as directory_cli

    app.add_typer(directory_cli.app, name="directory")

    from wildix_ast.cli import devices as devices_cli

    app.add_typer(devices_cli.app, name="device")

    from wildix_ast.cli import provisioning as provisioning_cli

    app.add_typer(provisioning_cli.app, name="provisioning")
    app.add_typer(voicemail_logins_cli.app, name="voicemail")
    app.add_typer(cdr_cli.app, name="cdr")
    preferences_cli.app.command("delete")(cdr_cli.user_delete)

    from wildix_ast.cli import mail as mail_cli

    app.add_typer(mail_cli.app, name="mail")
    app.add_typer(mail_cli.smtp_app, name="smtp")
    app.add_typer(realtime_cli.app, name="realtime")

    from wildix_ast.cli import fax as fax_cli

    app.add_typer(fax_cli.app, name="fax")


def _own_verbs() -> set[str]:
    from typer.main import get_command_name

    names = {c.name or get_command_name(c.callback.__name__) for c in app.registered_commands
             if c.callback is not None}
    return names | {g.name for g in app.registered_groups if g.name}


def mount_subcommands(argv: list[str]) -> None:
    """Add the command groups whose modules are heavy (lab, agi, runtime) unless `argv`
    runs a verb defined here: `render` and `apply` then start without importing them, and
    `--help`, a group or an unknown word still see every command."""
    if argv and (argv[0] in _own_verbs() or argv[0] == "--version"):
        return
    _mount_lab()
    _mount_services()


def main() -> None:
    """Entry point: WildixError becomes a message and an exit code, never a traceback."""
    # The process ends with the command: the interpreter's last garbage collection would
    # walk every object of a large site (0.1-0.2 s at 10,000 users) only to free it.
    atexit.register(gc.freeze)
    if sys.argv[1:2] and sys.argv[1] in SHORT_LIVED:
        _short_lived()  # from here: typer's parsing of the options builds pydantic adapters
    try:
        mount_subcommands(sys.argv[1:])
        app()
    except WildixError as error:
        report_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as error:
        if os.environ.get("WILDIX_AST_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(error).__name__}: {error}\n"
                  "  this is a bug in wildix-ast; run again with WILDIX_AST_DEBUG=1 for details")
        sys.exit(70)


__all__ = ["SettingsError", "app", "main", "mount_subcommands", "progress"]

if _COLLECTING:
    gc.enable()
