"""What a person reads: rich output on a terminal, plain text elsewhere, errors without
tracebacks."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console
from rich.markup import escape

from wildix_ast.errors import WildixError


def _width(stream: TextIO) -> int | None:
    """A terminal's own width; elsewhere (CI logs, pipes) wide enough that tables don't
    truncate, unless COLUMNS says otherwise."""
    if stream.isatty() or "COLUMNS" in os.environ:
        return None
    return 120


_NO_COLOR = "NO_COLOR" in os.environ
out = Console(highlight=False, soft_wrap=True, no_color=_NO_COLOR, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, no_color=_NO_COLOR,
              width=_width(sys.stderr))


def report_error(error: WildixError) -> None:
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    for problem in error.problems:
        where = f"[yellow]{escape(problem.location)}[/]: " if problem.location else ""
        err.print(f"  {where}{escape(problem.message)}")


def progress(message: str) -> None:
    """One line of progress for long steps (lab build, apply)."""
    err.print(f"[dim]•[/] {escape(message)}")
