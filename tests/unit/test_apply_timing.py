"""`apply --timing` and the `timing` of `apply --json` (apply/timing.py): every phase is
counted once, in running order, the gaps show as 'other', and work done alongside the
reload is shown without being added."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from support.cli_run import EXAMPLE, assert_no_traceback, run

from wildix_ast.apply.timing import PHASES, Phases, process_age

pytestmark = pytest.mark.slow  # runs the CLI as processes


def test_phases_add_up_to_the_process_time() -> None:
    phases = Phases()
    with phases.phase("render"):
        time.sleep(0.02)
    with phases.phase("load"):
        time.sleep(0.01)
    with phases.alongside("store compare"):
        time.sleep(0.01)
    with phases.phase("render"):  # a phase met twice is one row, its times added
        time.sleep(0.01)
    with phases.phase("plan"):  # CPU time: a busy loop counts, a sleep does not
        until = time.thread_time() + 0.03
        while time.thread_time() < until:
            pass
    rows = phases.rows()
    names = [name for name, _, _ in rows]
    # running order, whatever the order they were met in; 'start' is the interpreter's
    assert names[:3] == ["start", "load", "render"]
    assert names[-1] == "other"
    seconds = dict((name, s) for name, s, _ in rows)
    assert seconds["render"] >= 0.03 and 0.01 <= seconds["load"] < 0.03
    assert "store compare" not in seconds and phases.overlapped["store compare"] >= 0.01
    assert abs(sum(seconds.values()) - phases.total()) < 0.01
    assert phases.cpu["plan"] >= 0.03 and phases.cpu["load"] < 0.005
    assert phases.cpu["start"] > 0  # the interpreter's start and imports
    data = phases.to_json()
    assert set(data) == {"total_seconds", "phases", "alongside", "cpu_seconds",
                         "cpu_total_seconds"}
    assert list(data["phases"]) == names  # type: ignore[call-overload]


def test_process_age_is_this_process_since_its_start() -> None:
    age = process_age()
    assert age is not None and 0 < age < 3600


def test_every_phase_says_what_it_covers() -> None:
    assert all(PHASES.values())
    assert {"load", "render", "plan", "write", "reload", "verify", "store"} <= set(PHASES)


def copy_example(folder: Path) -> Path:
    shutil.copytree(EXAMPLE.parent, folder, dirs_exist_ok=True)
    return folder / EXAMPLE.name


def test_offline_apply_prints_and_reports_its_timing(tmp_path: Path) -> None:
    """Without Asterisk (`--offline` into a folder): the table on standard error, the same
    phases in --json."""
    site = copy_example(tmp_path / "site")
    etc = tmp_path / "etc"
    etc.mkdir()
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    shown = run("apply", str(site), "--offline", "--etc", str(etc), "--data",
                str(tmp_path / "data"), "--timing", env=env)
    assert shown.returncode == 0, shown.stderr
    assert_no_traceback(shown)
    assert "where the time went" in shown.stderr
    for phase in ("load", "render", "plan", "store", "output"):
        assert f"\n {phase} " in shown.stderr or f"\n{phase} " in shown.stderr, shown.stderr
    renamed = site.with_name("renamed.yaml")
    renamed.write_text(site.read_text(encoding="utf-8").replace(
        "name: Alice Martin", "name: Alice Renamed", 1), encoding="utf-8")
    result = run("apply", str(renamed), "--offline", "--etc", str(etc), "--data",
                 str(tmp_path / "data"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    timing = json.loads(result.stdout)["timing"]
    phases = timing["phases"]
    assert {"start", "load", "render", "plan", "store"} <= set(phases)
    # an offline apply's own steps are named too, not left in 'other' (issue 22: 0.55 s of
    # a 10,000-user rename was there): the check of the new files, their writing (and the
    # realtime rows), the manifest and generation, the devices' update and the store closed
    assert {"imports", "check", "write", "generation", "devices"} <= set(phases), phases
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) <= timing["total_seconds"] + 0.01
    # no timing table without the option
    assert "where the time went" not in run(
        "apply", str(site), "--offline", "--etc", str(etc), "--data",
        str(tmp_path / "data"), env=env).stderr


def test_the_work_alongside_gets_its_priority_back_once_the_apply_waits_for_it() -> None:
    """The store comparison runs at nice 19 during Asterisk's reload; once the apply waits
    for it, it runs at the apply's own priority (root may raise a thread's priority; an
    unprivileged apply keeps 19, and still ends)."""
    import os
    import threading

    from wildix_ast.apply.target import _hurry, _in_thread

    started, release = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait(10)

    helper = _in_thread(work)
    assert started.wait(10)
    assert helper.native_id is not None
    assert os.getpriority(os.PRIO_PROCESS, helper.native_id) == 19
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    _hurry(helper)
    expected = mine if os.geteuid() == 0 else 19
    assert os.getpriority(os.PRIO_PROCESS, helper.native_id) == expected
    release.set()
    helper.join(10)
    assert not helper.is_alive()
    _hurry(helper)  # a finished helper: nothing to do, no error


def test_a_phase_can_be_the_entering_of_a_block() -> None:
    """A lock taken or a console reached: the phase is measured from a mark to the first
    line inside the block (`mark`, `since`), added to what the phase already had."""
    phases = Phases()
    with phases.phase("plan"):
        time.sleep(0.01)
    mark = phases.mark()
    time.sleep(0.02)
    phases.since("plan", mark)
    assert phases.seconds["plan"] >= 0.03
    assert phases.cpu["plan"] < 0.02  # sleeping is no CPU


def test_a_phase_under_way_counts_until_the_table_is_made() -> None:
    """`apply --json` makes its output (the plan's diff: a while for a large file) inside
    its `output` phase, and the timing in that output counts it so far, not as 'other'."""
    phases = Phases()
    with phases.phase("output"):
        time.sleep(0.03)
        data = phases.to_json()
    shown = data["phases"]
    assert isinstance(shown, dict) and shown["output"] >= 0.03
    assert shown.get("other", 0.0) < 0.02
    assert phases.seconds["output"] >= 0.03  # and it is kept once ended
