"""Apply a rendered configuration to a running Asterisk: plan, commit, discard, rollback.

* `plan.py`: the immutable `Plan` (masked diff, checks, minimal reloads, drift);
* `state.py`: what is kept beside the target (manifest, generations, journal, lock);
* `verify.py`: what Asterisk must show once the change is live, asked through AMI;
* `target.py`: `ConfigTarget`, the NAPALM-like verbs over one configuration folder.

Layer 6: imports Asterisk generation, the store, the sounds and the model; `pipeline`
holds the use cases (render, apply with the store update inside, rollback, install).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wildix_ast.apply.plan import FileChange, Plan, ReloadStep, make_plan
    from wildix_ast.apply.state import STATE_DIR, Generation, Journal, TargetState
    from wildix_ast.apply.target import (
        ApplyReport,
        ConfigTarget,
        Record,
        ReloadResult,
        Timeouts,
    )
    from wildix_ast.apply.verify import Expectation

#: Where each name is defined: loaded on first use, so that importing one light module of
#: the package (`apply.timing`, the first thing `apply` imports) does not load every
#: generated file's rules, the store's realtime writer and the sounds.
_HOMES = {
    "FileChange": "plan", "Plan": "plan", "ReloadStep": "plan", "make_plan": "plan",
    "STATE_DIR": "state", "Generation": "state", "Journal": "state", "TargetState": "state",
    "ApplyReport": "target", "ConfigTarget": "target", "Record": "target",
    "ReloadResult": "target", "Timeouts": "target",
    "Expectation": "verify",
}
# (`verify`, the function, is imported from `apply.verify`: loaded lazily, the package's
# `verify` attribute is that module once it is imported)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "STATE_DIR", "ApplyReport", "ConfigTarget", "Expectation", "FileChange", "Generation",
    "Journal", "Plan", "Record", "ReloadResult", "ReloadStep", "TargetState", "Timeouts",
    "make_plan",
]
