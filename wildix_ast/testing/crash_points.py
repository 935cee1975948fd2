"""Fault injection for the tests that kill a state-changing command midway: a real SIGKILL
of the real process at a named step (`WILDIX_AST_CRASH_AT=<step>`), not a simulation."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "WILDIX_AST_CRASH_AT"


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
