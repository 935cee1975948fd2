"""The `wildix-ast` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wildix_ast import __version__
from wildix_ast.console import err, out, progress, report_error
from wildix_ast.errors import SettingsError, WildixError
from wildix_ast.passwords import GENERATED_LENGTH, MIN_LENGTH, generate_password, password_problems
from wildix_ast.settings_file import dump_site, load_site

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


@app.command()
def validate(site_file: SiteFile) -> None:
    """Check a settings file; list every problem with its location."""
    site = load_site(site_file)
    phones = sum(1 for u in site.users if u.type.has_phone)
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
    from wildix_ast.store import open_store

    site = load_site(site_file)
    text = site_file.read_text(encoding="utf-8")
    with open_store(db) as store:
        report = store.import_site(site, source_text=text)
    out.print(f"[green]✓[/] imported {site_file}: {report}")


@app.command("export")
def export(
    db: DbUrl = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                                "instead of standard output.")] = None,
    with_secrets: Annotated[bool, typer.Option(help="Include SIP and WEB passwords.")]
    = False,
) -> None:
    """Print the stored site as a settings file."""
    from wildix_ast.store import open_store

    with open_store(db) as store:
        if not store.has_site():
            raise WildixError("the store holds no site yet: run `wildix-ast import SITE` first")
        site = store.export_site()
    text = dump_site(site, include_secrets=with_secrets)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"[green]✓[/] wrote {output}")


def main() -> None:
    """Entry point: WildixError becomes a message and an exit code, never a traceback."""
    try:
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


__all__ = ["SettingsError", "Table", "app", "main", "progress"]
