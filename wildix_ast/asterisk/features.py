"""features.conf: in-call features (transfers, parking keys); Asterisk's defaults for now."""

from __future__ import annotations

from wildix_ast.asterisk.base import ConfigFile, Reload, static_modules

FILE = ConfigFile(
    name="features.conf",
    applied_by=Reload("features", "module reload features", order=20),
    modules=static_modules("bridge_builtin_features.so", "bridge_builtin_interval_features.so"),
)
