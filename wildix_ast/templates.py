"""Where the Jinja2 templates are found, for every kind the project renders (Asterisk's
files, the phones' provisioning files): a built-in folder per kind, and a user's folder of
overrides searched before it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wildix_ast.errors import RenderError


def builtin_folder(env_var: str, kind: str) -> Path:
    """The folder named by `$env_var`, else `<repo>/templates/<kind>` (a checkout or an
    editable install), else `<prefix>/share/wildix-ast/templates/<kind>` (a wheel installs
    them there, e.g. for the Ansible role)."""
    named = os.environ.get(env_var)
    if named:
        return Path(named)
    checkout = Path(__file__).resolve().parents[1] / "templates" / kind
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "wildix-ast" / "templates" / kind


def checked_folders(overrides: Path | None, builtin: Path, env_var: str,
                    what: str = "template") -> tuple[str | None, str]:
    """The overrides folder (if any) and the built-in one, both resolved, each checked to
    exist: a missing folder is a RenderError naming it, not a template not found later."""
    if overrides is not None and not overrides.is_dir():
        raise RenderError(f"{what} folder {overrides} does not exist")
    if not builtin.is_dir():
        raise RenderError(f"built-in {what} folder {builtin} does not exist (set ${env_var})")
    return None if overrides is None else str(overrides.resolve()), str(builtin.resolve())
