"""The generated Asterisk configuration files: one module per file, gathered in one registry.

Every module of this package that defines `FILE = ConfigFile(...)` is a generated file
(`base.ConfigFile` lists what it declares); its template is `templates/asterisk/<name>.j2`.
Render, plan, apply and verification iterate `registry()`, so a new generated file is one
module here and one template, nothing else.

Layer 5: imports the model, the sounds, the store's vault and the call-time names
(`calls`); `render` lays the views out with the templates.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from wildix_ast.asterisk.base import ConfigFile

_NOT_FILES = frozenset({"base", "names", "outgoing"})


@functools.cache
def registry() -> tuple[ConfigFile, ...]:
    """Every generated file, sorted by name."""
    found: list[ConfigFile] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_FILES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        config_file = getattr(module, "FILE", None)
        if isinstance(config_file, ConfigFile):
            found.append(config_file)
    names = [f.name for f in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"generated files declared twice: {duplicates}")
    return tuple(sorted(found, key=lambda f: f.name))


def by_name() -> dict[str, ConfigFile]:
    return {f.name: f for f in registry()}


__all__ = ["ConfigFile", "by_name", "registry"]
