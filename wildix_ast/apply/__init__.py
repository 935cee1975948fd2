"""Apply a rendered configuration to a running Asterisk: plan, commit, discard, rollback.

* `plan.py`: the immutable `Plan` (masked diff, checks, minimal reloads, drift);
* `state.py`: what is kept beside the target (manifest, generations, journal, lock);
* `verify.py`: what Asterisk must show once the change is live, asked through AMI;
* `target.py`: `ConfigTarget`, the NAPALM-like verbs over one configuration folder.

Layer 6: imports Asterisk generation, the store, the sounds and the model; `pipeline`
holds the use cases (render, apply with the store update inside, rollback, install).
"""

from __future__ import annotations

from wildix_ast.apply.plan import FileChange, Plan, ReloadStep, make_plan
from wildix_ast.apply.state import STATE_DIR, Generation, Journal, TargetState
from wildix_ast.apply.target import ApplyReport, ConfigTarget, Record, ReloadResult, Timeouts
from wildix_ast.apply.verify import Expectation, verify

__all__ = [
    "STATE_DIR", "ApplyReport", "ConfigTarget", "Expectation", "FileChange", "Generation",
    "Journal", "Plan", "Record", "ReloadResult", "ReloadStep", "TargetState", "Timeouts",
    "make_plan", "verify",
]
