"""How many examples a property test tries: all of them in CI (`CI` set, as `.ci/run` sets
it), an eighth outside (at least 10) so that `pytest tests/unit` stays a quick inner loop.
The derandomized tests try the first examples of the same sequence either way."""

from __future__ import annotations

import os


def examples(full: int) -> int:
    return full if os.environ.get("CI") else max(10, full // 8)
