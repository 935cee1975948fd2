"""What a verb loads before it runs, and while it runs (issue 22: a one-user apply's
start-up was half a second of imports). Each verb runs in a child process as a person runs
it, which reports the modules it loaded and the garbage collections it made.

Heavy here: SQLAlchemy and alembic (the store beyond sqlite3), Jinja2 (rendering),
panoramisk (AMI), ldap3 (the directory), argon2 (WEB password hashing), PyYAML (only to
locate a problem in a settings file), and the settings model itself (pydantic: 0.2 s of
building validators). (`--help` alone lists every group, whose modules load the lab's and
the services' code: not light.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli_run import EXAMPLE

pytestmark = pytest.mark.slow  # runs the CLI as processes

HEAVY_LIBRARIES = frozenset({"sqlalchemy", "alembic", "jinja2", "panoramisk", "ldap3",
                             "argon2", "yaml"})
MODEL = "wildix_ast.model.site"

#: Runs `main()` as the console script does; writes what was loaded and how many garbage
#: collections ran once the command line's module was imported, to $PROBE_OUT.
PROBE = """\
import gc, json, os, sys
from wildix_ast.cli.main import main
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
sys.argv = ["wildix-ast", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
finally:
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump({"modules": sorted(sys.modules), "collections": len(collections)}, out)
"""


def _probe(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           ) -> tuple[set[str], set[str], int]:
    """(top-level packages, wildix_ast modules, garbage collections) of one command."""
    report = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {}), "PROBE_OUT": str(report)})
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(report.read_text())
    modules = set(found["modules"])
    return ({m.split(".")[0] for m in modules}, {m for m in modules if m.startswith(
        "wildix_ast.")}, int(found["collections"]))


@pytest.mark.parametrize("args", [("apply", "--help"), ("render", "--help"), ("--version",),
                                  ("password", "generate")])
def test_light_verbs_load_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    packages, ours, _ = _probe(tmp_path, *args)
    assert not packages & HEAVY_LIBRARIES, sorted(packages & HEAVY_LIBRARIES)
    assert MODEL not in ours


def test_an_offline_apply_loads_only_what_it_uses_and_collects_no_garbage(
        tmp_path: Path) -> None:
    """A second apply of an unchanged site without Asterisk: no AMI client, no migration,
    no directory, no hashing, no second YAML parser; and no garbage collection pass from
    the command line's import to the exit (each pass walks every object of the site: the
    10,000 users of a large one)."""
    shutil.copytree(EXAMPLE.parent, tmp_path / "site")
    site = tmp_path / "site" / EXAMPLE.name
    args = ("apply", str(site), "--offline", "--etc", str(tmp_path / "etc"), "--data",
            str(tmp_path / "data"), "--json")
    (tmp_path / "etc").mkdir()
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3"),
           "WILDIX_AST_PASSWORD_KEY": str(tmp_path / "key" / "tag.key")}
    _probe(tmp_path, *args, env=env)  # the first install: the store is made (alembic)
    packages, ours, collections = _probe(tmp_path, *args, env=env)
    assert not packages & {"panoramisk", "alembic", "ldap3", "argon2", "yaml"}, packages
    assert {"jinja2", "pydantic"} <= packages  # (what it does use: the probe sees imports)
    assert MODEL in ours
    assert collections == 0


def test_no_pattern_of_the_settings_model_repeats_a_class_hundreds_of_times() -> None:
    """`[^\\x00-\\x1f]{1,1024}` is built by the regex engine as 1,024 copies of a Unicode
    class: 16-60 ms for each such type, paid by every process that loads the model (the
    directory's DN, filter and CA file types were 0.1 s of it). A length is `max_length`."""
    import re

    from wildix_ast.model import fields
    from wildix_ast.model.settings_file import load_site  # noqa: F401 - every model loaded

    bounded = re.compile(r"\{\d*,(\d+)\}")
    long = {p for p in fields._EXPLAINED if any(int(n) > 256 for n in bounded.findall(p))}
    assert not long, long
