"""What a person reads: rich output on a terminal, plain text elsewhere, errors without
tracebacks."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

from wildix_ast.errors import WildixError

out = Console(highlight=False, soft_wrap=True, no_color="NO_COLOR" in os.environ)
err = Console(stderr=True, highlight=False, soft_wrap=True, no_color="NO_COLOR" in os.environ)


def report_error(error: WildixError) -> None:
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    for problem in error.problems:
        where = f"[yellow]{escape(problem.location)}[/]: " if problem.location else ""
        err.print(f"  {where}{escape(problem.message)}")


def progress(message: str) -> None:
    """One line of progress for long steps (lab build, apply)."""
    err.print(f"[dim]•[/] {escape(message)}")
