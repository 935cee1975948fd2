"""What a person reads: rich output on a terminal, plain text elsewhere, errors without
tracebacks."""

from __future__ import annotations

import json
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


class _Mode:
    """`--json`: stdout carries one JSON object (also for an error), people read stderr."""

    json = False


mode = _Mode()


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error_json(error: WildixError) -> dict[str, object]:
    return {"ok": False, "error": {
        "message": error.message, "exit_code": error.exit_code, "kind": type(error).__name__,
        "problems": [{"location": p.location, "message": p.message} for p in error.problems]}}


def report_error(error: WildixError) -> None:
    if mode.json:
        emit_json(error_json(error))
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    for problem in error.problems:
        where = f"[yellow]{escape(problem.location)}[/]: " if problem.location else ""
        err.print(f"  {where}{escape(problem.message)}")


def progress(message: str) -> None:
    """One line of progress for long steps (lab build, apply)."""
    err.print(f"[dim]•[/] {escape(message)}")
